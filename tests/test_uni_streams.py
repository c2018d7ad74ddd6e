"""Unidirectional SSE (``/connection/uni_sse``) and HTTP streaming (``/connection/uni_http_stream``)."""

from __future__ import annotations

import asyncio
import socket
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import orjson
import pytest
from fastapi import FastAPI
from servers import RunningServer, running_server

from fastapi_realtime import ChannelOptions, Hub, HubSettings, JWTAuth
from fastapi_realtime.transports.sse import SSEEncoder, parse_last_event_id

SECRET = "uni-stream-tests-secret-of-enough-length"
SSE = "/connection/uni_sse"
STREAM = "/connection/uni_http_stream"


def token(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET, algorithm="HS256")


def make_hub(**settings: Any) -> Hub:
    namespaces = {"": ChannelOptions(), "news": ChannelOptions(history_size=100, history_ttl=300)}
    return Hub(HubSettings(namespaces=namespaces, **settings), auth=JWTAuth(secret=SECRET))


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Hub, RunningServer]]:
    hub: Hub = getattr(request, "param", None) or make_hub()
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_sse_path=SSE, uni_http_stream_path=STREAM))
    async with running_server(app) as srv:
        yield hub, srv


def cf_connect(body: dict[str, Any]) -> str:
    return "?cf_connect=" + urllib.parse.quote(orjson.dumps(body).decode())


class SSEReader:
    """Reads SSE events (id, parsed data) from a streaming httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.last_id: str | None = None

    async def event(self) -> tuple[str | None, Any]:
        event_id, data = None, None
        async with asyncio.timeout(5):
            async for line in self.lines:
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data = orjson.loads(line[6:])
                elif line == "" and data is not None:
                    if event_id is not None:
                        self.last_id = event_id
                    return event_id, data
        raise EOFError("the stream ended")

    async def push(self) -> dict[str, Any]:
        """The next event that is not a ping."""
        while True:
            _, data = await self.event()
            if data:
                return dict(data)


async def test_sse_connect_push_publications_and_event_ids(server: Any) -> None:
    hub, srv = server
    query = cf_connect({"token": token("alice", channels=["news:a", "plain"])})
    async with httpx.AsyncClient(base_url=srv.http_url) as http, http.stream("GET", SSE + query) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        reader = SSEReader(response)
        connect_id, connected = await reader.event()
        assert set(connected["connect"]["subs"]) == {"news:a", "plain"}
        epoch = connected["connect"]["subs"]["news:a"]["epoch"]
        assert orjson.loads(connect_id or "") == {"news:a": [0, epoch]}
        await hub.publish("news:a", {"n": 1})
        await hub.publish("plain", "two")
        pub_id, push = await reader.event()
        assert push["channel"] == "news:a" and push["pub"]["data"] == {"n": 1} and push["pub"]["offset"] == 1
        assert orjson.loads(pub_id or "") == {"news:a": [1, epoch]}
        plain_id, push = await reader.event()
        assert push["pub"]["data"] == "two" and plain_id is None


async def test_sse_reconnect_with_last_event_id_recovers_missed_publications(server: Any) -> None:
    hub, srv = server
    query = cf_connect({"token": token("bob", channels=["news:r"])})
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        async with http.stream("GET", SSE + query) as response:
            reader = SSEReader(response)
            await reader.push()
            await hub.publish("news:r", 1)
            assert (await reader.push())["pub"]["data"] == 1
            last_id = reader.last_id
        for n in (2, 3):  # published while the reader was away
            await hub.publish("news:r", n)
        headers = {"Last-Event-ID": last_id or ""}
        async with http.stream("GET", SSE + query, headers=headers) as response:
            reader = SSEReader(response)
            sub = (await reader.push())["connect"]["subs"]["news:r"]
            assert sub["recovered"] is True
            assert [p["data"] for p in sub["publications"]] == [2, 3]
            await hub.publish("news:r", 4)
            push = await reader.push()
            assert push["pub"]["data"] == 4 and push["pub"]["offset"] == 4
            assert orjson.loads(reader.last_id or "")["news:r"][0] == 4


async def test_http_stream_recovers_from_the_positions_in_subs(server: Any) -> None:
    hub, srv = server
    body = {"token": token("carol", channels=["news:h"])}
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        async with http.stream("POST", STREAM, content=orjson.dumps(body)) as response:
            assert response.headers["content-type"].startswith("application/x-ndjson")
            lines = response.aiter_lines()
            sub = orjson.loads(await anext(lines))["connect"]["subs"]["news:h"]
            await hub.publish("news:h", "a")
            pub = orjson.loads(await anext(lines))["pub"]
        await hub.publish("news:h", "b")
        again = {**body, "subs": {"news:h": {"recover": True, "offset": pub["offset"], "epoch": sub["epoch"]}}}
        async with http.stream("POST", STREAM, content=orjson.dumps(again)) as response:
            recovered = orjson.loads(await anext(response.aiter_lines()))["connect"]["subs"]["news:h"]
    assert recovered["recovered"] is True
    assert [p["data"] for p in recovered["publications"]] == ["b"]


@pytest.mark.parametrize("server", [make_hub(ping_interval=0.2, pong_timeout=0.1)], indirect=True)
async def test_pings_keep_idle_streams_moving(server: Any) -> None:
    _, srv = server
    query = cf_connect({"token": token("dave")})
    async with httpx.AsyncClient(base_url=srv.http_url) as http, http.stream("GET", SSE + query) as response:
        reader = SSEReader(response)
        assert "pong" not in (await reader.push())["connect"]
        assert (await reader.event())[1] == {}  # a ping, and no pong is expected: the stream stays
        assert (await reader.event())[1] == {}


async def test_server_disconnect_ends_the_stream_after_a_disconnect_push(server: Any) -> None:
    hub, srv = server
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        async with http.stream("POST", STREAM, json={"token": token("erin")}) as response:
            lines = [orjson.loads(line) async for line in _after_connect(hub, response, "erin")]
    assert lines[-1] == {"disconnect": {"code": 3503, "reason": "force disconnect"}}
    await hub.wait_idle()
    assert hub.stats["sessions"] == 0


async def _after_connect(hub: Hub, response: httpx.Response, user: str) -> AsyncIterator[str]:
    async with asyncio.timeout(5):
        lines = response.aiter_lines()
        yield await anext(lines)
        await hub.disconnect(user)
        async for line in lines:
            yield line


async def test_a_bad_token_gets_a_disconnect_push(server: Any) -> None:
    _, srv = server
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        response = await http.get(SSE + cf_connect({"token": "not-a-token"}), timeout=5)
    assert response.text.startswith('data: {"disconnect":{"code":3500,"reason":"invalid token')


@pytest.mark.parametrize(
    ("path", "request_args", "message"),
    [
        (SSE + "?cf_connect=%7Bnot-json", {}, "must be JSON"),
        (SSE + "?cf_connect=%5B1%5D", {}, "must be a JSON object"),
        (STREAM, {"content": b"x" * 70_000}, "over client_max_frame_bytes"),
    ],
)
async def test_bad_connect_requests_get_400(server: Any, path: str, request_args: dict[str, Any], message: str) -> None:
    _, srv = server
    method = "POST" if path == STREAM else "GET"
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        response = await http.request(method, path, timeout=5, **request_args)
    assert response.status_code == 400 and message in response.text


@pytest.mark.parametrize("bad", ["nope", "[1]", '{"c":[-1,"e"]}', '{"c":"x"}', "{" + "x" * 5000])
async def test_a_bad_last_event_id_gets_400(server: Any, bad: str) -> None:
    _, srv = server
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        response = await http.get(SSE, headers={"Last-Event-ID": bad}, timeout=5)
    assert response.status_code == 400 and "Last-Event-ID" in response.text


@pytest.mark.parametrize("server", [make_hub(sse_event_id_max_bytes=40)], indirect=True)
async def test_an_event_id_over_the_limit_is_not_sent(server: Any) -> None:
    _, srv = server
    query = cf_connect({"token": token("fay", channels=["news:" + "x" * 40])})
    async with httpx.AsyncClient(base_url=srv.http_url) as http, http.stream("GET", SSE + query) as response:
        reader = SSEReader(response)
        event_id, _ = await reader.event()
        assert event_id is None


@pytest.mark.parametrize("server", [make_hub(allowed_origins=("https://good.example",))], indirect=True)
async def test_the_origin_check_applies(server: Any, caplog: pytest.LogCaptureFixture) -> None:
    _, srv = server
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        for path, method in ((SSE, "GET"), (STREAM, "POST")):
            response = await http.request(method, path, headers={"Origin": "https://evil.example"}, timeout=5)
            assert response.status_code == 403
        async with http.stream("GET", SSE, headers={"Origin": "https://good.example"}) as response:
            assert response.status_code == 200
    assert "not allowed by allowed_origins" in caplog.text


@pytest.mark.parametrize(
    "server", [make_hub(client_queue_max_bytes=64 * 1024, shutdown_timeout=5.0, ping_interval=0)], indirect=True
)
async def test_a_reader_that_never_reads_is_dropped_without_slowing_others(server: Any) -> None:
    hub, srv = server
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small TCP window
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", srv.port))
    query = cf_connect({"token": token("stalled", channels=["news:s"])})
    await loop.sock_sendall(sock, f"GET {SSE}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    seen = b""
    async with asyncio.timeout(5):
        while b'"connect"' not in seen:  # read up to the connect push, then never again
            seen += await loop.sock_recv(sock, 4096)
    (stalled,) = hub._users["stalled"]
    payload = "x" * 16384
    count = 400
    query = cf_connect({"token": token("reader", channels=["news:s"])})
    async with httpx.AsyncClient(base_url=srv.http_url) as http, http.stream("GET", SSE + query) as response:
        reader = SSEReader(response)
        await reader.push()
        for i in range(count):
            await hub.publish("news:s", {"i": i, "pad": payload})
            assert (await reader.push())["pub"]["data"]["i"] == i
        async with asyncio.timeout(10):
            await stalled.wait_ended()
        assert stalled.close_code == 3008
    sock.close()


async def test_hub_shutdown_sends_3001_and_ends_the_stream(server: Any) -> None:
    hub, srv = server
    async with httpx.AsyncClient(base_url=srv.http_url) as http:
        async with http.stream("POST", STREAM, json={"token": token("gus")}) as response:
            lines = response.aiter_lines()
            async with asyncio.timeout(5):
                assert "connect" in orjson.loads(await anext(lines))
                await hub.close()
                rest = [orjson.loads(line) async for line in lines if line]
    assert rest[-1] == {"disconnect": {"code": 3001, "reason": "shutdown"}}


def test_event_ids_are_ascii_and_read_back() -> None:
    encoder = SSEEncoder(4096)
    connect = {"connect": {"subs": {"news:ü": {"recoverable": True, "offset": 3, "epoch": "e"}, "plain": {}}}}
    event = encoder(orjson.dumps(connect).decode()).decode()
    event_id = event.split("\n")[0].removeprefix("id: ")
    assert event_id.isascii()
    assert parse_last_event_id(event_id, 4096) == {"news:ü": (3, "e")}
    pub = encoder('{"channel":"news:ü","pub":{"data":1,"offset":4}}').decode()
    assert parse_last_event_id(pub.split("\n")[0].removeprefix("id: "), 4096) == {"news:ü": (4, "e")}
    unsubscribed = encoder('{"channel":"news:ü","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}')
    assert unsubscribed.startswith(b"id: {}\n")
    assert encoder('{"channel":"plain","pub":{"data":2}}') == b'data: {"channel":"plain","pub":{"data":2}}\n\n'
