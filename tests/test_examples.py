"""The examples, end to end: each app on a real uvicorn server, driven by real clients.

Every wait is bounded by ``asyncio.timeout``; nothing sleeps to synchronise. Where a test must
show that something did *not* arrive, it sends a later marker on the same path and checks the
marker is the next thing received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cent import AsyncClient, HistoryRequest, PublishRequest
from servers import running_server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from wsclient import ProtocolClient

from examples import auth, chat, echo, fallback, http_api, scaleout, streams, ticker
from fastapi_realtime import Hub, StreamPosition

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
"""Seconds any single wait may take before the test fails."""


async def recv_json(ws: ClientConnection) -> Any:
    async with asyncio.timeout(TIMEOUT):
        return json.loads(await ws.recv())


async def assert_refused(url: str, status: int = 403, headers: Mapping[str, str] | None = None) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(TIMEOUT), connect(url, additional_headers=headers):
            pass
    assert refused.value.response.status_code == status


# -- echo ---------------------------------------------------------------------------------


async def test_echo_sends_every_text_back_in_order() -> None:
    async with running_server(echo.app) as server, connect(f"{server.ws_url}/ws") as ws:
        texts = ["hello", "", "ünïcødé ✓", "x" * 10_000]
        for text in texts:
            await ws.send(text)
        async with asyncio.timeout(TIMEOUT):
            assert [await ws.recv() for _ in texts] == texts


# -- chat ---------------------------------------------------------------------------------


def joined(room: str, name: str, online: list[str]) -> dict[str, Any]:
    return {"type": "join", "room": room, "name": name, "online": online}


def message(room: str, name: str, text: str) -> dict[str, Any]:
    return {"type": "message", "room": room, "name": name, "text": text}


async def test_chat_message_reaches_everyone_in_the_room_and_no_one_else() -> None:
    async with running_server(chat.app) as server, contextlib.AsyncExitStack() as stack:

        async def enter(room: str, name: str) -> ClientConnection:
            ws = await stack.enter_async_context(connect(f"{server.ws_url}/ws/{room}?name={name}"))
            # A client's own join is its first frame: once it has it, the client is in the room.
            assert (await recv_json(ws))["name"] == name
            return ws

        ada = await enter("lobby", "ada")
        bob = await enter("lobby", "bob")
        assert await recv_json(ada) == joined("lobby", "bob", ["ada", "bob"])
        cy = await enter("garden", "cy")

        await ada.send("hello lobby")
        assert await recv_json(ada) == message("lobby", "ada", "hello lobby")
        assert await recv_json(bob) == message("lobby", "ada", "hello lobby")

        await cy.send("marker")  # published after ada's message: had that leaked, it would come first
        assert await recv_json(cy) == message("garden", "cy", "marker")


async def test_chat_tells_the_room_who_joins_and_leaves() -> None:
    async with running_server(chat.app) as server, connect(f"{server.ws_url}/ws/lobby?name=ada") as ada:
        assert await recv_json(ada) == joined("lobby", "ada", ["ada"])
        async with connect(f"{server.ws_url}/ws/lobby?name=bob") as bob:
            assert await recv_json(bob) == joined("lobby", "bob", ["ada", "bob"])
            assert await recv_json(ada) == joined("lobby", "bob", ["ada", "bob"])
        assert await recv_json(ada) == {"type": "leave", "room": "lobby", "name": "bob", "online": ["ada"]}


async def test_chat_announcement_reaches_every_room() -> None:
    async with (
        running_server(chat.app) as server,
        connect(f"{server.ws_url}/ws/lobby?name=ada") as ada,
        connect(f"{server.ws_url}/ws/garden?name=cy") as cy,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):
        assert (await recv_json(ada))["type"] == "join"
        assert (await recv_json(cy))["type"] == "join"

        response = await http.post("/announce", json={"text": "tea time"})
        assert response.status_code == 200
        assert response.json() == {"status": "sent"}
        assert await recv_json(ada) == {"type": "announce", "text": "tea time"}
        assert await recv_json(cy) == {"type": "announce", "text": "tea time"}

        assert (await http.post("/announce", json={"text": ""})).status_code == 422


async def test_chat_refuses_bad_room_names_before_accepting() -> None:
    async with running_server(chat.app) as server:
        await assert_refused(f"{server.ws_url}/ws/ns:room")
        await assert_refused(f"{server.ws_url}/ws/{'x' * 65}")
        await assert_refused(f"{server.ws_url}/ws/lobby?name=")


async def test_chat_serves_the_demo_page_and_health() -> None:
    async with (
        running_server(chat.app) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<title>fastapi-realtime chat</title>" in page.text
        assert "new WebSocket(" in page.text
        assert "/ws/${encodeURIComponent(room)}" in page.text

        health = await http.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}


# -- ticker -------------------------------------------------------------------------------


async def test_ticker_sends_ticks_in_order_and_a_heartbeat_per_connection() -> None:
    app = ticker.create_app(tick_interval=0.02, heartbeat_interval=0.02)
    hub: Hub = app.state.hub
    async with running_server(app) as server:
        async with connect(f"{server.ws_url}/ws") as ws:
            ticks: list[int] = []
            beats: list[int] = []
            async with asyncio.timeout(TIMEOUT):
                while len(ticks) < 3 or len(beats) < 2:
                    event = json.loads(await ws.recv())
                    if event["type"] == "tick":
                        ticks.append(event["seq"])
                    else:
                        assert event["type"] == "heartbeat"
                        beats.append(event["count"])
            assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # consecutive: none lost or reordered
            assert beats[:2] == [1, 2]  # this connection's own counter
        # The session, with its heartbeat task, is gone once the client is.
        async with asyncio.timeout(TIMEOUT):
            await hub.wait_idle()
        assert hub.stats["sessions"] == 0


class _EventHandler(logging.Handler):
    """Collects records of one logger and sets an event at the first error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.error = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.error.set()


@pytest.fixture
def ticker_errors() -> Any:
    handler = _EventHandler()
    ticker.log.addHandler(handler)
    try:
        yield handler
    finally:
        ticker.log.removeHandler(handler)


class BrokenPublishHub(Hub):
    async def publish(
        self, channel: str, data: Any, *, info: Any = None, tags: Mapping[str, str] | None = None
    ) -> StreamPosition:
        raise RuntimeError("broker down")


async def test_ticker_failure_is_logged(ticker_errors: _EventHandler) -> None:
    app = ticker.create_app(hub=BrokenPublishHub(), tick_interval=0.01)
    async with running_server(app):
        async with asyncio.timeout(TIMEOUT):
            await ticker_errors.error.wait()
    [record] = ticker_errors.records
    assert "ticker task failed" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_ticker_stops_quietly_on_shutdown(ticker_errors: _EventHandler) -> None:
    app = ticker.create_app(tick_interval=0.01)
    async with running_server(app) as server, connect(f"{server.ws_url}/ws") as ws:
        assert (await recv_json(ws))["type"] == "tick"
    assert ticker_errors.records == []


# -- auth ---------------------------------------------------------------------------------


async def test_auth_refuses_a_connection_without_a_valid_token() -> None:
    other_key = jwt.encode({"sub": "ada"}, "another-secret-of-at-least-32-bytes!", algorithm="HS256")
    async with running_server(auth.app) as server:
        url = f"{server.ws_url}/ws"
        await assert_refused(url)
        await assert_refused(f"{url}?token=not-a-jwt")
        await assert_refused(f"{url}?token={other_key}")
        await assert_refused(f"{url}?token={auth.mint_token('ada', ttl=-60)}")  # expired
        await assert_refused(url, headers={"Authorization": "Bearer not-a-jwt"})


async def test_auth_accepts_a_minted_token_and_knows_the_user() -> None:
    async with (
        running_server(auth.app) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):
        response = await http.get("/token", params={"user": "ada"})
        assert response.status_code == 200
        token = response.json()["token"]

        async with connect(f"{server.ws_url}/ws?token={token}") as ws:
            assert await recv_json(ws) == {"type": "welcome", "user": "ada"}
            await ws.send("hi")
            assert await recv_json(ws) == {"type": "echo", "user": "ada", "text": "hi"}

        bearer = {"Authorization": f"Bearer {auth.mint_token('bob')}"}
        async with connect(f"{server.ws_url}/ws", additional_headers=bearer) as ws:
            assert await recv_json(ws) == {"type": "welcome", "user": "bob"}


# -- one command each ---------------------------------------------------------------------

# -- http_api -----------------------------------------------------------------------------


async def test_http_api_publication_from_cent_and_curl_reaches_a_sdk_subscriber() -> None:
    async with (
        running_server(http_api.app) as server,
        ProtocolClient.connected(f"{server.ws_url}/connection/websocket", timeout=TIMEOUT) as ws,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):
        assert "connect" in await ws.request({"id": 1, "connect": {}})
        assert "error" not in await ws.command("subscribe", {"channel": "news:lobby"})

        client = AsyncClient(f"{server.http_url}/api", http_api.API_KEY, timeout=TIMEOUT)
        try:
            result = await client.publish(PublishRequest(channel="news:lobby", data={"text": "hi"}))
            assert result.offset == 1
            # The docstring's curl: a form-encoded content type, the key in X-API-Key.
            curl = await http.post(
                "/api/publish",
                content=b'{"channel": "news:lobby", "data": {"text": "hi"}}',
                headers={"X-API-Key": http_api.API_KEY, "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert curl.status_code == 200 and curl.json()["result"]["offset"] == 2
            history = await client.history(HistoryRequest(channel="news:lobby", limit=-1))
            assert [p.offset for p in history.publications] == [1, 2]
        finally:
            await client.close()
        for offset in (1, 2):
            pub = (await ws.next_push())["pub"]
            assert (pub["data"], pub["offset"]) == ({"text": "hi"}, offset)
        wrong = await http.post("/api/publish", json={"channel": "news:lobby", "data": 1})
        assert wrong.status_code == 401


STARTED = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


# -- scaleout (on the memory broker here; on Redis, in many processes, in test_scaleout.py) ---


async def test_scaleout_serves_the_protocol_and_the_server_api() -> None:
    app, _ = scaleout.create_app()
    async with (
        running_server(app) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
        ProtocolClient.connected(f"{server.ws_url}/connection/websocket") as client,
    ):
        await client.command("connect", {"data": {"user": "alice"}})
        await client.command("subscribe", {"channel": "chat:lobby"})
        assert (await http.post("/publish/chat:lobby", json={"text": "hi"})).json()["offset"] == 1
        assert (await client.next_push())["pub"]["data"] == {"text": "hi"}
        await http.post("/broadcast", json="notice")
        assert await client.next_push() == {"message": {"data": "notice"}}
        assert (await http.get("/presence/chat:lobby")).json()["num_users"] == 1
        assert (await http.get("/health")).json() == {"broker": "up"}
        refused = await http.post("/publish/nowhere", json={})
        assert (refused.status_code, refused.json()["code"]) == (400, 102)
        await http.post("/disconnect/alice")
        assert (await client.closed())[1] == 3503


# -- streams ------------------------------------------------------------------------------


async def test_streams_sse_and_json_lines_get_news_and_sse_recovers_with_last_event_id() -> None:
    async with (
        running_server(streams.app) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
    ):

        async def next_data(lines: Any, prefix: str = "") -> Any:
            async with asyncio.timeout(TIMEOUT):
                async for line in lines:
                    if line.startswith(prefix) and line[len(prefix) :] not in ("", "{}"):
                        return json.loads(line[len(prefix) :])
            raise AssertionError("the stream ended")

        last_id = ""
        async with (
            http.stream("GET", "/connection/uni_sse") as sse,
            http.stream("POST", "/connection/uni_http_stream", content=b"{}") as ndjson,
        ):
            sse_lines, json_lines = sse.aiter_lines(), ndjson.aiter_lines()
            assert "news" in (await next_data(sse_lines, "data: "))["connect"]["subs"]
            assert "news" in (await next_data(json_lines))["connect"]["subs"]
            assert (await http.post("/news", json={"text": "one"})).json() == {"offset": 1}
            async with asyncio.timeout(TIMEOUT):
                async for line in sse_lines:
                    if line.startswith("id: "):
                        last_id = line[4:]
                        break
            assert (await next_data(sse_lines, "data: "))["pub"]["data"] == {"text": "one"}
            assert (await next_data(json_lines))["pub"]["data"] == {"text": "one"}
        await http.post("/news", json={"text": "missed"})
        async with http.stream("GET", "/connection/uni_sse", headers={"Last-Event-ID": last_id}) as sse:
            sub = (await next_data(sse.aiter_lines(), "data: "))["connect"]["subs"]["news"]
        assert [p["data"] for p in sub["publications"]] == [{"text": "missed"}]


# -- fallback -----------------------------------------------------------------------------


async def test_fallback_http_stream_session_subscribes_and_publishes_through_emulation() -> None:
    async with (
        running_server(fallback.app) as server,
        httpx.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as http,
        http.stream("POST", "/connection/http_stream", json={"id": 1, "connect": {}}) as stream,
    ):
        lines = stream.aiter_lines()

        async def reply() -> Any:
            async with asyncio.timeout(TIMEOUT):
                async for line in lines:
                    if line not in ("", "{}"):
                        return json.loads(line)
            raise AssertionError("the stream ended")

        connect = (await reply())["connect"]
        emulation = {"session": connect["session"], "node": connect["node"]}
        subscribe = json.dumps({"id": 2, "subscribe": {"channel": "chat:lobby"}})
        assert (await http.post("/emulation", json={**emulation, "data": subscribe})).status_code == 204
        assert (await reply())["id"] == 2
        publish = json.dumps({"id": 3, "publish": {"channel": "chat:lobby", "data": {"text": "hi"}}})
        assert (await http.post("/emulation", json={**emulation, "data": publish})).status_code == 204
        got = [await reply(), await reply()]
        assert {"id": 3, "publish": {}} in got
        assert [g["push"]["pub"]["data"] for g in got if "push" in g] == [{"text": "hi"}]


@pytest.mark.parametrize("name", ["echo", "chat", "ticker", "auth", "http_api", "scaleout", "streams", "fallback"])
async def test_example_runs_with_python_dash_m(name: str) -> None:
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": "0", "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"examples.{name}",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(TIMEOUT * 2):
            port = None
            while port is None:
                line = await proc.stderr.readline()
                assert line, "the example exited before it served"
                if found := STARTED.search(line):
                    port = int(found.group(1))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as http:
            assert (await http.get("/openapi.json")).status_code == 200
        if name == "chat":  # `make demo` says what to do next, before uvicorn starts
            async with asyncio.timeout(TIMEOUT):
                printed = (await proc.stdout.readline() + await proc.stdout.readline()).decode()
            assert "open http://127.0.0.1:<the port uvicorn prints below> in two browser tabs" in printed
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(TIMEOUT * 2):
            await proc.communicate()
    assert proc.returncode == 0
