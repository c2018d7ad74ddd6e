"""The hub's protocol endpoint on our uvicorn WebSocket protocol detaches each connection
from its ASGI call: once set up, a connection is served by its session's task alone (no
framework call stack, no ASGI task), and the WebSocket-level keepalive gives way to the
Centrifuge pings when those expect pongs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from servers import RunningServer, running_server
from wsclient import ProtocolClient

from fastapi_realtime import Hub, HubSettings
from fastapi_realtime.transports.uvicorn_ws import RealtimeWebSocketProtocol


@asynccontextmanager
async def serving(settings: HubSettings, **config: object) -> AsyncIterator[tuple[Hub, RunningServer]]:
    hub = Hub(settings)
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server(app, **config) as server:
        yield hub, server


def protocols(server: RunningServer) -> list[RealtimeWebSocketProtocol]:
    return [c for c in server.server.server_state.connections if isinstance(c, RealtimeWebSocketProtocol)]


async def test_a_detached_connection_holds_no_asgi_task_and_works_both_ways() -> None:
    async with serving(HubSettings(allow_anonymous=True)) as (hub, server):
        url = f"{server.ws_url}/connection/websocket"
        client = await ProtocolClient.open(url, ("news",))
        try:
            # Connected and subscribed, served: and the endpoint's ASGI call is over.
            assert not server.server.server_state.tasks
            assert len(protocols(server)) == 1
            await hub.publish("news", {"n": 1})
            assert (await client.next_push())["pub"]["data"] == {"n": 1}
            assert (await client.command("unsubscribe", {"channel": "news"})) == {"id": 3, "unsubscribe": {}}
        finally:
            await client.close()


@pytest.mark.parametrize(("ping_interval", "websocket_pings"), [(25.0, False), (0.0, True)])
async def test_websocket_pings_give_way_to_centrifuge_pings(ping_interval: float, websocket_pings: bool) -> None:
    settings = HubSettings(allow_anonymous=True, ping_interval=ping_interval)
    async with serving(settings, ws_ping_interval=20.0) as (_, server):
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket")
        try:
            (protocol,) = protocols(server)
            assert (protocol._keepalive is not None) is websocket_pings
        finally:
            await client.close()
