"""The tutorial API reads each connection with exactly one reader, so no message is lost.

Bursts of every size sent the instant the handshake completes all come back, in order, on
many connections at once (to a uvicorn process of its own: a client in the server's event
loop does not see the race this guards against), and FastAPI's ``TestClient`` can
run two sessions in one room and leave them, again and again, without an error on exit.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from fakes import FakeTransport
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from subprocess_server import uvicorn_process
from websockets.asyncio.client import connect

from fastapi_realtime import ChannelOptions, Hub, HubSettings
from fastapi_realtime.protocol.codecs import RawCodec
from fastapi_realtime.session import SessionClosed

WAIT = 10.0
"""Upper bound of each connection's whole exchange, in seconds."""

MAX_FRAME = 64 * 1024


def room_app(hub: Hub) -> FastAPI:
    app = FastAPI(lifespan=hub.lifespan)

    @app.websocket("/room/{room}")
    async def room(websocket: WebSocket, room: str) -> None:
        async with hub.connection(websocket) as conn:
            await conn.join(room)
            await conn.send_text("joined")
            async for text in conn.iter_text():
                await hub.publish(room, text)

    return app


SIZES = [1, 2, 125, 126, 127, 1000, 4096, 65535, MAX_FRAME - 1, MAX_FRAME]
"""Payload sizes around the WebSocket length encodings, up to ``client_max_frame_bytes``."""


def burst(connection: int) -> list[str | bytes]:
    """Messages of every size, text and binary alternating, each naming its place."""
    out: list[str | bytes] = []
    for i, size in enumerate(SIZES):
        head = f"{connection}.{i}:"
        body = head + "x" * (size - len(head)) if size > len(head) else head[:size]
        out.append(body if i % 2 == 0 else body.encode())
    return out


@pytest.mark.parametrize(
    "ws", ["auto", "fastapi_realtime.transports.uvicorn_ws:RealtimeWebSocketProtocol"], ids=["uvicorn", "realtime"]
)
async def test_a_burst_right_after_the_handshake_is_echoed_whole_and_in_order(ws: str) -> None:
    async def one(url: str, n: int) -> list[str | bytes]:
        sent = burst(n)
        async with asyncio.timeout(WAIT), connect(url, max_size=None) as ws:
            for message in sent:  # no pause between the handshake and the first message
                await ws.send(message)
            return [await ws.recv() for _ in sent]

    with uvicorn_process("lifecycle_app:app", "--log-level", "warning", "--ws", ws) as server:
        url = f"{server.ws_url}/echo"
        for round_ in range(4):
            results = await asyncio.gather(*(one(url, round_ * 100 + n) for n in range(25)))
            for n, echoed in enumerate(results):
                assert echoed == burst(round_ * 100 + n)
        server.process.send_signal(signal.SIGINT)
        server.process.wait(WAIT)
        assert "Traceback" not in server.output()


def test_two_testclient_sessions_in_one_room_leave_cleanly_every_time() -> None:
    hub = Hub(HubSettings(allow_anonymous=True, ping_interval=0, namespaces={"": ChannelOptions()}))
    with TestClient(room_app(hub)) as client:
        for i in range(50):
            with client.websocket_connect("/room/lobby") as alice, client.websocket_connect("/room/lobby") as bob:
                assert alice.receive_text() == "joined"
                assert bob.receive_text() == "joined"
                alice.send_text(f"hello {i}")
                assert alice.receive_text() == f"hello {i}"
                assert bob.receive_text() == f"hello {i}"
    assert hub.stats == {"sessions": 0, "users": 0, "channels": 0, "subscriptions": 0}


class WatchedTransport(FakeTransport):
    """Tells when a receive is waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.receiving = asyncio.Event()

    async def receive(self) -> str | bytes:
        self.receiving.set()
        return await super().receive()


async def test_one_reader_only_and_a_receive_in_progress_ends_when_the_session_closes() -> None:
    async with Hub(HubSettings(allow_anonymous=True)) as hub:
        transport = WatchedTransport()
        session = hub.open_session(transport, RawCodec())
        first = asyncio.ensure_future(session.receive())
        await asyncio.wait_for(transport.receiving.wait(), WAIT)
        with pytest.raises(RuntimeError, match="one reader per connection"):
            await session.receive()
        session.close(3001, "shutdown")
        with pytest.raises(SessionClosed):
            await asyncio.wait_for(first, WAIT)
        assert not first.cancelled()  # interrupted, not cancelled: the caller sees SessionClosed
        await asyncio.wait_for(session.wait_ended(), WAIT)
        assert transport.closed_with == (3001, "shutdown")
