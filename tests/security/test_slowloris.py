"""Slowloris and connection hoarding against a server started with ``fastapi_realtime.uvicorn_config``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from fastapi_realtime import Hub, HubSettings, uvicorn_config
from fastapi_realtime.serve import ConnectionGuard
from security.conftest import ServerLog, serving

PARTIAL_UPGRADE = b"GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"


def hub_app(settings: HubSettings) -> tuple[Hub, FastAPI]:
    hub = Hub(settings)
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    return hub, app


def guard_of(config: object) -> ConnectionGuard:
    guard = getattr(config, "http").guard  # noqa: B009 - the protocol class uvicorn_config made
    assert isinstance(guard, ConnectionGuard)
    return guard


@contextlib.asynccontextmanager
async def stalled(port: int, request: bytes) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        yield reader, writer
    finally:
        writer.close()


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()  # until the server closes


async def test_stalled_and_trickled_upgrades_are_closed_after_the_handshake_timeout(server_log: ServerLog) -> None:
    hub, app = hub_app(HubSettings(handshake_timeout=1.0, server_connections_per_ip=200))
    config = uvicorn_config(app, hub=hub, log_level="info", ws_ping_interval=None)
    async with serving(config, server_log) as server, contextlib.AsyncExitStack() as stack:
        # 40 partial upgrade requests and 10 connections that send nothing at all
        clients = [await stack.enter_async_context(stalled(server.port, PARTIAL_UPGRADE)) for _ in range(40)]
        clients += [await stack.enter_async_context(stalled(server.port, b"")) for _ in range(10)]
        trickler = clients[0][1]
        async with asyncio.timeout(5):  # 1 s timeout + slack on a loaded 2-core machine
            trickle = asyncio.create_task(trickle_forever(trickler))
            responses = await asyncio.gather(*(read_to_eof(reader) for reader, _ in clients))
            trickle.cancel()
        assert all(r.startswith(b"HTTP/1.1 408 ") for r in responses), {r[:20] for r in responses}
        assert guard_of(config).count("127.0.0.1") == 0
        # a client that completes its upgrade in time is served as usual
        async with connect(server.ws_url + "/connection/websocket", open_timeout=5) as ws:
            await ws.send('{"id":1,"connect":{}}')
            assert "error" in await ws.recv()  # anonymous connections are off: a reply, not a hang


async def trickle_forever(writer: asyncio.StreamWriter) -> None:
    """One header byte at a time (each write starts no new timer: the request is the same)."""
    with contextlib.suppress(ConnectionError):
        while not writer.is_closing():
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.05)  # the attack's pace, not a synchronisation


async def test_a_client_ip_over_its_connection_cap_gets_503(server_log: ServerLog) -> None:
    hub, app = hub_app(HubSettings(handshake_timeout=10.0, server_connections_per_ip=5, allow_anonymous=True))
    config = uvicorn_config(app, hub=hub, log_level="info", ws_ping_interval=None)
    url = None
    async with serving(config, server_log) as server, contextlib.AsyncExitStack() as stack:
        url = server.ws_url + "/connection/websocket"
        sockets: list[ClientConnection] = [
            await stack.enter_async_context(connect(url, open_timeout=5)) for _ in range(3)
        ]
        await stack.enter_async_context(stalled(server.port, PARTIAL_UPGRADE))
        await stack.enter_async_context(stalled(server.port, PARTIAL_UPGRADE))
        assert guard_of(config).count("127.0.0.1") == 5
        for _ in range(3):  # refused before any HTTP is read; one warning for the episode
            with pytest.raises(InvalidStatus) as refused:
                await connect(url, open_timeout=5)
            assert refused.value.response.status_code == 503
        await sockets[0].close()  # returns once the server closed the TCP connection
        assert guard_of(config).count("127.0.0.1") == 4
        async with connect(url, open_timeout=5) as ws:  # a freed slot is usable again
            await ws.send('{"id":1,"connect":{}}')
            assert '"id":1' in await ws.recv()
    assert len(server_log.matching("refusing connections from 127.0.0.1")) == 1


async def test_uvicorn_config_applies_the_hubs_frame_limit_and_no_compression() -> None:
    hub, app = hub_app(HubSettings(client_max_frame_bytes=12345))
    config = uvicorn_config(app, hub=hub, port=0)
    assert config.ws_max_size == 12345
    assert config.ws_per_message_deflate is False
    assert uvicorn_config(app, hub=hub, ws_max_size=1000).ws_max_size == 1000  # explicit options win


def test_the_guard_counts_per_ip_and_leaves_unix_sockets_uncapped() -> None:
    guard = ConnectionGuard(handshake_timeout=1.0, per_ip=2)
    a, b, c = (asyncio.Transport() for _ in range(3))
    assert guard.admit("10.0.0.1", a) and guard.admit("10.0.0.1", b)
    assert not guard.admit("10.0.0.1", c)
    assert guard.admit("10.0.0.2", c)
    guard.release("10.0.0.1", a)
    guard.release("10.0.0.1", a)  # idempotent
    assert guard.count("10.0.0.1") == 1
    assert all(guard.admit("", t) for t in (a, b, c, a))  # no client address: a Unix socket
    assert guard.count("") == 0
