"""centrifuge-js falling back to ``http_stream`` and ``sse`` (bidirectional emulation) when its
WebSocket is refused: connect, subscribe, publish, presence, RPC, recovery after a reconnect;
and, with the Redis broker, emulation requests that land on another node than the stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from js_harness import node_available, scenario, websocket_url
from namespaces import CHAT
from redis_servers import RedisServer
from servers import RunningServer, running_server

from fastapi_realtime import ChannelOptions, Hub, HubSettings, JWTAuth, RPCContext
from fastapi_realtime.brokers.redis import RedisBroker

SECRET = "fastapi-realtime-emulation-secret-0123456789abcdef"
CHANNEL = "chat:fallback"
REFUSED_WS = "/connection/no-websocket-here"


@pytest.fixture(autouse=True)
def _node() -> None:
    node_available()


def make_hub(**kwargs: Any) -> Hub:
    hub = Hub(HubSettings(namespaces={"": ChannelOptions(), "chat": CHAT}), auth=JWTAuth(secret=SECRET), **kwargs)

    @hub.rpc("whoami")
    async def whoami(ctx: RPCContext, data: Any) -> Any:
        return {"user": ctx.user, "echo": data}

    return hub


@contextlib.asynccontextmanager
async def serving(hub: Hub) -> AsyncIterator[RunningServer]:
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(http_stream_path="/connection/http_stream", sse_path="/connection/sse"))
    async with running_server(app) as server:
        yield server


def transports(stream: RunningServer, use: str) -> list[dict[str, str]]:
    """WebSocket refused (404), then ``use`` (the other emulation transport refused too)."""
    base = stream.http_url
    listed = [{"transport": "websocket", "endpoint": stream.ws_url + REFUSED_WS}]
    for name in ("http_stream", "sse"):
        path = f"/connection/{name}" if name == use else "/connection/refused"
        listed.append({"transport": name, "endpoint": base + path})
    return listed


async def run_fallback(hub: Hub, stream: RunningServer, emulation: RunningServer, use: str) -> None:
    missed = 2
    params = {
        "token": jwt.encode({"sub": "ann"}, SECRET, algorithm="HS256"),
        "transports": transports(stream, use),
        "emulation_endpoint": emulation.http_url + "/emulation",
        "channel": CHANNEL,
        "rpc_method": "whoami",
        "data": {"text": "hi"},
        "total": 1 + missed,
    }
    async with scenario(websocket_url(stream.host, stream.port), "fallback", params) as js:
        ready = await js.expect("READY")
        assert ready["transport"] == use
        assert ready["publication"]["data"] == {"text": "hi"}
        assert ready["presence"] == [ready["client"]]
        assert ready["rpc"] == {"user": "ann", "echo": {"text": "hi"}}
        assert (await js.expect("OFFLINE"))["received"] == 1
        for n in range(missed):
            await hub.publish(CHANNEL, {"missed": n})
        await js.send("GO")
        again = await js.expect("RESUBSCRIBED")
        assert again["transport"] == use
        assert again["subscribed"]["wasRecovering"] is True and again["subscribed"]["recovered"] is True
        result = await js.finish()
    pubs = result["publications"]
    assert [p["data"] for p in pubs] == [{"text": "hi"}, {"missed": 0}, {"missed": 1}]
    assert result["gaps"] == [] and result["duplicates"] == []


@pytest.mark.parametrize("use", ["http_stream", "sse"])
async def test_centrifuge_js_falls_back_when_websocket_is_refused(use: str) -> None:
    hub = make_hub()
    async with serving(hub) as server:
        await run_fallback(hub, server, server, use)
        await hub.wait_idle()
        assert hub.stats["sessions"] == 0


@pytest.mark.parametrize("use", ["http_stream", "sse"])
async def test_emulation_requests_on_another_node_go_through_redis(redis_server: RedisServer, use: str) -> None:
    prefix = f"emulation-{use}"
    hub_a = make_hub(broker=RedisBroker(redis_server.url, prefix=prefix))
    hub_b = make_hub(broker=RedisBroker(redis_server.url, prefix=prefix))
    async with serving(hub_a) as stream_node, serving(hub_b) as emulation_node:
        await run_fallback(hub_a, stream_node, emulation_node, use)
