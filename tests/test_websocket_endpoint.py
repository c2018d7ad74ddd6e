"""The WebSocket side of the hub over a real uvicorn server: the handshake of the protocol
endpoint (subprotocols, and which uvicorn ``ws`` implementation accepts old SDKs), and the
tutorial API (``async with hub.connection(websocket)``): pings, expiry, refused joins, frame
types, sends after the client left, background tasks and the connection limit.

Every wait is bounded by ``asyncio.timeout``; nothing sleeps to synchronise. Each server also
checks, on the way out, that nothing was logged at ERROR or above. Servers run this project's
WebSocket protocol (``RealtimeWebSocketProtocol``, the hub's direct channel); the tests marked
with ``WS_PROTOCOLS`` also run under uvicorn's own, where the hub goes through plain ASGI.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi import FastAPI, WebSocket
from servers import running_server_logging_no_errors
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect
from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol
from wsclient import read_until_closed

from fastapi_realtime import ChannelOptions, Hub, HubSettings
from fastapi_realtime.transports.uvicorn_ws import RealtimeWebSocketProtocol

WAIT = 5.0
"""Upper bound of every single wait, in seconds."""

WS_PROTOCOLS = pytest.mark.parametrize(
    "ws", [pytest.param(RealtimeWebSocketProtocol, id="realtime"), pytest.param("websockets-sansio", id="sansio")]
)
"""This project's WebSocket protocol (the direct channel) and uvicorn's own (the ASGI path)."""

CLOCK_SLACK = 0.05
"""Seconds allowed between the server's loop clock and this test's wall clock."""

PROTOCOL_PATH = "/connection/websocket"
JSON = Subprotocol("centrifuge-json")
PROTOBUF = Subprotocol("centrifuge-protobuf")


# -- the app under test -------------------------------------------------------------------


@dataclass
class Probe:
    """What the app's endpoints report back to the test."""

    late_send: asyncio.Future[BaseException | None] = field(default_factory=asyncio.Future)
    """The outcome of ``conn.send_text`` after the client left (``None``: it returned)."""
    task_ended: asyncio.Event = field(default_factory=asyncio.Event)
    task_outcome: list[str] = field(default_factory=list)
    websocket_paths: list[str] = field(default_factory=list)
    """Paths of the WebSocket connections that reached the ASGI app."""


def make_app(hub: Hub, probe: Probe) -> Any:
    """The hub's protocol endpoint plus tutorial-API endpoints, behind a recorder of the
    WebSocket scopes that reach the app."""
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            while True:
                await conn.send_text(await conn.receive_text())

    @app.websocket("/pinged")
    async def pinged(websocket: WebSocket) -> None:
        async with hub.connection(websocket, ping="ping") as conn:
            async for text in conn.iter_text():
                if text == "marker":
                    await conn.send_text(text)

    @app.websocket("/expiring")
    async def expiring(websocket: WebSocket, at: int) -> None:
        async with hub.connection(websocket, expire_at=at) as conn:
            async for text in conn.iter_text():
                await conn.send_text(text)

    @app.websocket("/join")
    async def join(websocket: WebSocket, room: str) -> None:
        async with hub.connection(websocket, user="alice") as conn:
            await conn.join(room)
            await conn.send_text(f"joined {room}")
            async for _ in conn.iter_text():
                pass

    @app.websocket("/late")
    async def late(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            await conn.send_text("ready")
            with contextlib.suppress(WebSocketDisconnect):
                await conn.receive_text()  # until the client leaves
            try:
                await conn.send_text("too late")
            except WebSocketDisconnect as exc:
                probe.late_send.set_result(exc)
            else:
                probe.late_send.set_result(None)

    @app.websocket("/task")
    async def task(websocket: WebSocket) -> None:
        async def work() -> None:
            try:
                await conn.send_text("working")
                await asyncio.Event().wait()  # forever, unless cancelled
            except asyncio.CancelledError:
                probe.task_outcome.append("cancelled")
                raise
            finally:
                probe.task_ended.set()

        async with hub.connection(websocket) as conn:
            conn.start_task(work())
            async for _ in conn.iter_text():
                pass

    async def recorder(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            probe.websocket_paths.append(scope["path"])
        await app(scope, receive, send)

    return recorder


@dataclass
class Served:
    hub: Hub
    url: str
    probe: Probe


@contextlib.asynccontextmanager
async def serving(
    caplog: pytest.LogCaptureFixture, *, ws: Any = RealtimeWebSocketProtocol, **settings: Any
) -> AsyncIterator[Served]:
    """The app on a real uvicorn server (``ws`` picks uvicorn's WebSocket implementation).

    On exit (after the server stopped) asserts that nothing was logged at ERROR or above.
    """
    settings.setdefault("ping_interval", 0)
    hub = Hub(HubSettings(allow_anonymous=True, namespaces={"": ChannelOptions()}, **settings))
    probe = Probe()
    async with running_server_logging_no_errors(make_app(hub, probe), caplog, ws=ws) as server:
        yield Served(hub, server.ws_url, probe)


def opened(url: str, **options: Any) -> Any:
    options.setdefault("open_timeout", WAIT)
    return connect(url, **options)


async def recv(ws: ClientConnection) -> str | bytes:
    async with asyncio.timeout(WAIT):
        return await ws.recv()


async def closed(ws: ClientConnection) -> tuple[list[str | bytes], int, str]:
    """Read until the server closes: the frames that came first, the close code and reason."""
    async with asyncio.timeout(WAIT):
        frames, frame = await read_until_closed(ws.recv)
    return frames, frame.code, frame.reason


async def centrifuge_round_trip(hub: Hub, ws: ClientConnection) -> None:
    """Connect, subscribe and receive a publication over a protocol connection."""
    await ws.send('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"lobby"}}')
    replies: list[str] = []
    while len(replies) < 2:
        frame = await recv(ws)
        assert isinstance(frame, str)
        replies.extend(frame.split("\n"))
    assert replies[0].startswith('{"id":1,"connect":{"client":')
    assert replies[1] == '{"id":2,"subscribe":{}}'
    await hub.publish("lobby", {"n": 1})
    push = orjson.loads(await recv(ws))["push"]
    assert (push["channel"], push["pub"]["data"]) == ("lobby", {"n": 1})


# -- the protocol endpoint: handshake -----------------------------------------------------

EMPTY_SUBPROTOCOL_HEADER = {"Sec-WebSocket-Protocol": ""}
"""What old centrifuge-python releases send for JSON (``subprotocols=[]`` in websockets)."""


async def test_empty_subprotocol_header_is_accepted_when_uvicorn_runs_wsproto(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with (
        serving(caplog, ws="wsproto") as served,
        opened(served.url + PROTOCOL_PATH, additional_headers=EMPTY_SUBPROTOCOL_HEADER) as ws,
    ):
        assert ws.request is not None and ws.request.headers.get_all("Sec-WebSocket-Protocol") == [""]
        assert ws.subprotocol is None
        await centrifuge_round_trip(served.hub, ws)


@pytest.mark.parametrize("ws", ["auto", "websockets-sansio", RealtimeWebSocketProtocol])
async def test_empty_subprotocol_header_is_refused_with_400_by_uvicorns_default_ws(
    caplog: pytest.LogCaptureFixture, ws: Any
) -> None:
    # The websockets library refuses it, under this project's protocol too.
    # "auto", uvicorn's default, is the websockets sans-I/O implementation when websockets is installed.
    assert AutoWebSocketsProtocol is WebSocketsSansIOProtocol
    async with serving(caplog, ws=ws) as served:
        with pytest.raises(InvalidStatus) as refused:
            async with opened(served.url + PROTOCOL_PATH, additional_headers=EMPTY_SUBPROTOCOL_HEADER):
                pass
        assert refused.value.response.status_code == 400
        assert b"invalid Sec-WebSocket-Protocol header" in refused.value.response.body
        assert served.probe.websocket_paths == []  # refused by uvicorn: the app never saw it

        # Without the empty header the same server serves the client.
        async with opened(served.url + PROTOCOL_PATH, subprotocols=[JSON]) as ok:
            await centrifuge_round_trip(served.hub, ok)
        assert served.probe.websocket_paths == [PROTOCOL_PATH]


@pytest.mark.parametrize("offered", [[JSON], [PROTOBUF, JSON]], ids=["json", "protobuf_and_json"])
@WS_PROTOCOLS
async def test_centrifuge_json_subprotocol_is_negotiated(
    caplog: pytest.LogCaptureFixture, offered: list[Subprotocol], ws: Any
) -> None:
    async with serving(caplog, ws=ws) as served, opened(served.url + PROTOCOL_PATH, subprotocols=offered) as ws:
        assert ws.subprotocol == JSON
        await centrifuge_round_trip(served.hub, ws)


# -- the tutorial API ---------------------------------------------------------------------


@WS_PROTOCOLS
async def test_ping_option_closes_a_silent_client_with_3012(caplog: pytest.LogCaptureFixture, ws: Any) -> None:
    interval, timeout = 0.2, 0.1
    async with serving(caplog, ws=ws, ping_interval=interval, pong_timeout=timeout) as served:
        async with opened(served.url + "/pinged") as ws:
            start = time.monotonic()
            assert await closed(ws) == (["ping"], 3012, "no pong")
            assert time.monotonic() - start >= interval + timeout - CLOCK_SLACK


async def test_ping_option_keeps_a_client_that_answers_with_any_message(caplog: pytest.LogCaptureFixture) -> None:
    interval, timeout = 0.2, 0.1
    async with serving(caplog, ping_interval=interval, pong_timeout=timeout) as served:
        async with opened(served.url + "/pinged") as ws:
            start = time.monotonic()
            for n in range(4):  # each answer is different: any message counts as the pong
                assert await recv(ws) == "ping"
                await ws.send(f"answer {n}")
            assert time.monotonic() - start >= 4 * interval - CLOCK_SLACK
            await ws.send("marker")
            frame = await recv(ws)
            while frame == "ping":  # a ping may come first; answering it keeps the client in
                await ws.send("pong")
                frame = await recv(ws)
            assert frame == "marker"


async def test_expire_at_closes_the_connection_with_3005_at_expiry(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as served:
        expire_at = math.ceil(time.time() + 0.5)  # a whole second, at least half a second away
        async with opened(f"{served.url}/expiring?at={expire_at}") as ws:
            await ws.send("before expiry")
            assert await recv(ws) == "before expiry"
            assert await closed(ws) == ([], 3005, "connection expired")
            assert time.time() >= expire_at - CLOCK_SLACK


@pytest.mark.parametrize(
    ("room", "query"),
    [("$private", "%24private"), ("room#other", "room%23other")],
    ids=["private_room", "room_of_another_user"],
)
@WS_PROTOCOLS
async def test_refused_join_closes_with_1008_and_logs_no_error(
    caplog: pytest.LogCaptureFixture, room: str, query: str, ws: Any
) -> None:
    async with serving(caplog, ws=ws) as served:
        async with opened(f"{served.url}/join?room={query}") as ws:
            assert await closed(ws) == ([], 1008, "permission denied")
        # The user's own room is allowed: the endpoint joins it and gets its publications.
        async with opened(f"{served.url}/join?room=room%23alice") as ws:
            assert await recv(ws) == "joined room#alice"
            await served.hub.publish("room#alice", "for alice")
            assert await recv(ws) == "for alice"
        async with asyncio.timeout(WAIT):
            await served.hub.wait_idle()
        assert served.hub.channels() == []


async def test_binary_frame_to_receive_text_closes_with_1003(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as served, opened(served.url + "/echo") as ws:
        await ws.send("text")
        assert await recv(ws) == "text"
        await ws.send(b"\x00\x01binary")
        assert await closed(ws) == ([], 1003, "expected text frames")


@WS_PROTOCOLS
async def test_send_text_after_the_client_left_raises_websocket_disconnect(
    caplog: pytest.LogCaptureFixture, ws: Any
) -> None:
    async with serving(caplog, ws=ws) as served:
        async with opened(served.url + "/late") as ws:
            assert await recv(ws) == "ready"
            await ws.close(4000, "bye")
        async with asyncio.timeout(WAIT):
            outcome = await served.probe.late_send
        # The documented behaviour of a closed connection: WebSocketDisconnect, with the
        # code the client closed with.
        assert isinstance(outcome, WebSocketDisconnect)
        assert outcome.code == 4000


async def test_background_task_is_cancelled_when_the_client_disconnects(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as served:
        async with opened(served.url + "/task") as ws:
            assert await recv(ws) == "working"
            assert not served.probe.task_ended.is_set()
        async with asyncio.timeout(WAIT):
            await served.probe.task_ended.wait()
        assert served.probe.task_outcome == ["cancelled"]
        async with asyncio.timeout(WAIT):
            await served.hub.wait_idle()


@WS_PROTOCOLS
async def test_connection_past_max_connections_is_closed_with_3504(caplog: pytest.LogCaptureFixture, ws: Any) -> None:
    async with serving(caplog, ws=ws, max_connections=1) as served, opened(served.url + "/echo") as first:
        await first.send("first")
        assert await recv(first) == "first"
        async with opened(served.url + "/echo") as second:
            assert await closed(second) == ([], 3504, "connection limit")
        await first.send("still served")
        assert await recv(first) == "still served"
