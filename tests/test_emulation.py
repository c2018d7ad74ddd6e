"""The bidirectional emulation endpoints (``/connection/http_stream``, ``/connection/sse``,
``/emulation``) driven by hand: the wire shapes, bad requests and the inbox limit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from servers import RunningServer, running_server

from fastapi_realtime import ChannelOptions, Hub, HubSettings, RPCContext

STREAM, SSE, EMULATION = "/connection/http_stream", "/connection/sse", "/emulation"
CONNECT = orjson.dumps({"id": 1, "connect": {}})


@contextlib.asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[tuple[Hub, RunningServer, asyncio.Event]]:
    namespaces = {"": ChannelOptions(allow_publish_for_client=True, allow_publish_for_anonymous=True)}
    hub = Hub(HubSettings(allow_anonymous=True, namespaces=namespaces, **settings))
    release = asyncio.Event()

    @hub.rpc("wait")
    async def wait(ctx: RPCContext, data: Any) -> Any:
        await release.wait()
        return {"released": True}

    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(http_stream_path=STREAM, sse_path=SSE))
    async with running_server(app) as server:
        yield hub, server, release


async def next_reply(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next reply that is not a ping."""
    async with asyncio.timeout(5):
        async for line in lines:
            if line and line != "{}":
                return dict(orjson.loads(line))
    raise EOFError("the stream ended")


async def test_http_stream_connect_reply_has_session_and_node_and_commands_come_by_emulation() -> None:
    async with serving() as (hub, srv, _), httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http:
        async with http.stream("POST", STREAM, content=CONNECT) as response:
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = response.aiter_lines()
            connect = (await next_reply(lines))["connect"]
            assert connect["node"] == hub.node_id and len(connect["session"]) >= 32
            data = "\n".join(
                orjson.dumps(c).decode()
                for c in (
                    {"id": 2, "subscribe": {"channel": "room"}},
                    {"id": 3, "publish": {"channel": "room", "data": 1}},
                )
            )
            answer = await http.post(
                EMULATION, json={"session": connect["session"], "node": connect["node"], "data": data}
            )
            assert answer.status_code == 204
            assert (await next_reply(lines))["id"] == 2
            rest = [await next_reply(lines), await next_reply(lines)]
            assert {"id": 3, "publish": {}} in rest
            pushes = [r["push"] for r in rest if "push" in r]
            assert [(p["channel"], p["pub"]["data"]) for p in pushes] == [("room", 1)]


async def test_sse_stream_sends_batched_replies_as_one_event_of_data_lines() -> None:
    async with serving() as (_hub, srv, _), httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http:
        query = {"cf_connect": CONNECT.decode()}
        async with http.stream("GET", SSE, params=query) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()
            async with asyncio.timeout(5):
                first = await anext(lines)
            connect = orjson.loads(first.removeprefix("data: "))["connect"]
            commands = "\n".join(
                orjson.dumps({"id": i, "presence_stats": {"channel": "room"}}).decode() for i in (2, 3)
            )
            body = {"session": connect["session"], "node": connect["node"], "data": commands}
            assert (await http.post(EMULATION, json=body)).status_code == 204
            event = []
            async with asyncio.timeout(5):
                async for line in lines:
                    if line == "":
                        if event:
                            break
                        continue
                    event.append(line)
            assert all(line.startswith("data: ") for line in event)
            ids = [orjson.loads(line.removeprefix("data: ")).get("id") for line in event]
            assert set(ids) <= {2, 3} and ids[0] == 2


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"not json", 400, "must be JSON"),
        (b'{"session": "x", "node": "y"}', 400, '"data": str'),
        (b'{"session": "", "node": "y", "data": ""}', 400, '"data": str'),
        (orjson.dumps({"session": "x", "node": "y", "data": "x" * 70_000}), 413, "client_max_frame_bytes"),
    ],
)
async def test_bad_emulation_requests(body: bytes, status: int, message: str) -> None:
    async with serving() as (_, srv, _), httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http:
        answer = await http.post(EMULATION, content=body)
    assert answer.status_code == status and message in answer.text


async def test_an_unknown_session_on_this_node_gets_204_and_nothing_happens() -> None:
    async with serving() as (hub, srv, _), httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http:
        body = {"session": "nobody", "node": hub.node_id, "data": '{"id":1,"rpc":{}}'}
        assert (await http.post(EMULATION, json=body)).status_code == 204


@pytest.mark.parametrize(
    ("path", "request_args", "status"),
    [
        (STREAM, {"content": b""}, 400),
        (STREAM, {"content": b"x", "headers": {"Content-Type": "application/octet-stream"}}, 415),
        (STREAM, {"content": b"x" * 70_000}, 400),
        (STREAM, {"content": CONNECT, "headers": {"Origin": "https://evil.example"}}, 403),
        (EMULATION, {"content": b"{}", "headers": {"Origin": "https://evil.example"}}, 403),
    ],
)
async def test_refused_streams(path: str, request_args: dict[str, Any], status: int) -> None:
    async with serving() as (_, srv, _), httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http:
        assert (await http.post(path, **request_args)).status_code == status


async def test_a_session_with_emulation_queue_max_requests_waiting_refuses_more_with_429() -> None:
    async with (
        serving(emulation_queue_max_requests=2) as (_, srv, release),
        httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http,
        http.stream("POST", STREAM, content=CONNECT) as response,
    ):
        lines = response.aiter_lines()
        connect = (await next_reply(lines))["connect"]

        def request(n: int) -> dict[str, str]:
            command = {"id": n, "rpc": {"method": "wait"}}
            return {"session": connect["session"], "node": connect["node"], "data": orjson.dumps(command).decode()}

        assert (await http.post(EMULATION, json=request(2))).status_code == 204  # the handler waits in it
        statuses = [(await http.post(EMULATION, json=request(n))).status_code for n in (3, 4, 5)]
        assert statuses[-1] == 429 and 204 in statuses
        release.set()
        assert (await next_reply(lines)) == {"id": 2, "rpc": {"data": {"released": True}}}


async def test_a_server_disconnect_ends_the_stream_with_a_disconnect_push() -> None:
    async with (
        serving() as (hub, srv, _),
        httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http,
        http.stream("POST", STREAM, content=CONNECT) as response,
    ):
        lines = response.aiter_lines()
        client = (await next_reply(lines))["connect"]["client"]
        await hub.disconnect("", client=client)
        async with asyncio.timeout(5):
            rest = [orjson.loads(line) async for line in lines if line]
    assert rest[-1] == {"push": {"disconnect": {"code": 3503, "reason": "force disconnect"}}}


async def test_pings_are_answered_through_emulation_and_a_missing_pong_closes_with_3012() -> None:
    async with (
        serving(ping_interval=0.3, pong_timeout=0.2) as (_, srv, _),
        httpx.AsyncClient(base_url=srv.http_url, timeout=5) as http,
        http.stream("POST", STREAM, content=CONNECT) as response,
    ):
        lines = response.aiter_lines()
        connect = (await next_reply(lines))["connect"]
        assert connect["pong"] is True
        pong = {"session": connect["session"], "node": connect["node"], "data": "{}"}
        async with asyncio.timeout(5):
            for _ in range(2):  # answered pings keep the session
                assert await anext(lines) == "{}"
                assert (await http.post(EMULATION, json=pong)).status_code == 204
            assert await anext(lines) == "{}"  # this one is not answered
            rest = [orjson.loads(line) async for line in lines if line]
    assert rest[-1] == {"push": {"disconnect": {"code": 3012, "reason": "no pong"}}}
