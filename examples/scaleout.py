"""One hub across many processes: several uvicorn workers, or several servers, sharing Redis.

Every process runs the same app; the Redis broker carries publications, history, presence,
broadcasts and disconnects between them, so a client may connect to any process (no sticky
sessions) and sees the same channels everywhere::

    REDIS_URL=redis://127.0.0.1:6379/0 uvicorn examples.scaleout:app --workers 4

Without ``REDIS_URL`` it runs on the in-memory broker (one process only).

- ``WS /connection/websocket``: the Centrifuge protocol (centrifuge-js, centrifuge-python).
  Connect with ``data: {"user": "alice"}`` (demo only: the client says who it is; use
  :class:`fastapi_realtime.JWTAuth` in a real app). Channels ``chat:*`` keep 100 messages of
  history for recovery, track presence and let clients publish.
- ``POST /publish/{channel}`` (JSON body), ``POST /broadcast`` (JSON body),
  ``POST /disconnect/{user}``, ``GET /presence/{channel}``: the server API, each reaching
  every process.
- ``GET /health``: 200 while the broker is connected to Redis, 503 while it is not (a readiness
  probe: a load balancer stops sending new clients to a node that lost Redis).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_realtime import (
    Broker,
    BrokerUnavailable,
    ChannelOptions,
    ConnectContext,
    ConnectReply,
    Credentials,
    Hub,
    HubSettings,
    MemoryBroker,
    ReplyError,
)

from ._serve import serve

NAMESPACES = {
    "chat": ChannelOptions(history_size=100, history_ttl=600, presence=True, join_leave=True, allow_publish=True),
}


def broker_from_env() -> Broker:
    """A Redis broker on ``$REDIS_URL``, or the in-memory broker when it is not set."""
    url = os.environ.get("REDIS_URL")
    if not url:
        return MemoryBroker()
    from fastapi_realtime.brokers.redis import RedisBroker

    return RedisBroker(url)


def create_app(settings: HubSettings | None = None, broker: Broker | None = None) -> tuple[FastAPI, Hub]:
    """The app and its hub; ``settings`` must keep the ``chat`` namespace."""
    hub = Hub(
        settings or HubSettings(namespaces=NAMESPACES, allow_anonymous=True),
        broker=broker or broker_from_env(),
    )

    @hub.on_connect
    async def who(ctx: ConnectContext) -> ConnectReply:
        user = ctx.data.get("user", "") if isinstance(ctx.data, dict) else ""
        return ConnectReply(credentials=Credentials(user=str(user)))

    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())

    @app.exception_handler(ReplyError)
    async def refused(request: Request, exc: ReplyError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "error": exc.message}, status_code=400)

    @app.exception_handler(BrokerUnavailable)
    async def unavailable(request: Request, exc: BrokerUnavailable) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.post("/publish/{channel}")
    async def publish(channel: str, data: Annotated[Any, Body()]) -> dict[str, Any]:
        position = await hub.publish(channel, data)
        return {"offset": position.offset, "epoch": position.epoch}

    @app.post("/broadcast")
    async def broadcast(data: Annotated[Any, Body()]) -> dict[str, Any]:
        await hub.broadcast(data)
        return {}

    @app.post("/disconnect/{user}")
    async def disconnect(user: str) -> dict[str, Any]:
        await hub.disconnect(user)
        return {}

    @app.get("/presence/{channel}")
    async def presence(channel: str) -> dict[str, Any]:
        entries = await hub.presence(channel)
        clients, users = await hub.presence_stats(channel)
        return {"clients": sorted(entries), "num_clients": clients, "num_users": users}

    @app.get("/health")
    async def health() -> JSONResponse:
        healthy = hub.broker_healthy
        return JSONResponse({"broker": "up" if healthy else "down"}, status_code=200 if healthy else 503)

    return app, hub


app, hub = create_app()

if __name__ == "__main__":
    serve(app)
