"""A connection's objects are freed by reference counting when it ends: none of them waits in a
reference cycle for the garbage collector. During a connection storm the collector would
otherwise walk every finished connection (the HTTP protocol it upgraded from, with its request
scope, and every ended session with its handler), and their memory would wait for it.

Each test runs with the collector off, serves connections with ``uvicorn_config`` (our HTTP and
WebSocket protocols), stops the server, and then looks at what only the collector could free."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import httpx
import orjson
from fastapi import FastAPI, WebSocket
from servers import RunningServer, running_config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.asyncio.client import connect
from wsclient import ProtocolClient

from fastapi_realtime import Hub, HubSettings, uvicorn_config
from fastapi_realtime.client.handler import ClientHandler
from fastapi_realtime.client.subscriptions import Subscriptions
from fastapi_realtime.connection import Connection
from fastapi_realtime.session import Session
from fastapi_realtime.transports.uvicorn_ws import RealtimeWebSocketProtocol

PER_CONNECTION = (HttpToolsProtocol, RealtimeWebSocketProtocol, Session, ClientHandler, Subscriptions, Connection)
"""What each connection makes, from the HTTP request to the session and its owners."""

CLIENTS = 3


@contextmanager
def cyclic_garbage() -> Iterator[list[str]]:
    """Run the block with the collector off; then the list names the types of the objects of
    ``PER_CONNECTION`` that only the collector could free (they are in reference cycles)."""
    gc.collect()
    gc.disable()
    found: list[str] = []
    try:
        yield found
    finally:
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            found.extend(type(o).__name__ for o in gc.garbage if isinstance(o, PER_CONNECTION))
        finally:
            gc.garbage.clear()
            gc.set_debug(0)
            gc.enable()


async def assert_no_cycle_left(app: FastAPI, hub: Hub, visit: Callable[[RunningServer], Awaitable[None]]) -> None:
    """Serve ``app``, run ``visit`` ``CLIENTS`` times, wait until the hub forgot every session,
    stop the server (which lets go of every protocol object), and find no per-connection object
    in a reference cycle."""
    with cyclic_garbage() as garbage:
        config = uvicorn_config(app, hub=hub, log_level="warning", ws_ping_interval=None)
        async with running_config(config) as server:
            for _ in range(CLIENTS):
                await visit(server)
            await hub.wait_idle()
    assert garbage == []


async def test_a_protocol_client_leaves_no_reference_cycle() -> None:
    hub = Hub(HubSettings(allow_anonymous=True))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())

    async def visit(server: RunningServer) -> None:
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", ("news",))
        await hub.publish("news", {"n": 1})
        assert (await client.next_push())["pub"]["data"] == {"n": 1}
        await client.close()

    await assert_no_cycle_left(app, hub, visit)


async def test_a_tutorial_api_connection_leaves_no_reference_cycle() -> None:
    hub = Hub(HubSettings(allow_anonymous=True))
    app = FastAPI(lifespan=hub.lifespan)

    @app.websocket("/ws")
    async def echo(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            await conn.join("room")
            async for text in conn.iter_text():
                await hub.publish("room", text)

    async def visit(server: RunningServer) -> None:
        async with connect(f"{server.ws_url}/ws") as ws:
            await ws.send('"hello"')
            assert await ws.recv() == '"hello"'

    await assert_no_cycle_left(app, hub, visit)


async def test_an_http_stream_client_leaves_no_reference_cycle() -> None:
    hub = Hub(HubSettings(allow_anonymous=True))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(http_stream_path="/connection/http_stream"))
    connect_command = orjson.dumps({"id": 1, "connect": {}})

    async def visit(server: RunningServer) -> None:
        async with (
            httpx.AsyncClient(base_url=server.http_url, timeout=5) as http,
            http.stream("POST", "/connection/http_stream", content=connect_command) as response,
        ):
            async with asyncio.timeout(5):
                reply = await anext(response.aiter_lines())
            assert "connect" in orjson.loads(reply)

    await assert_no_cycle_left(app, hub, visit)
