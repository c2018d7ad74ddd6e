"""Build the standalone server's FastAPI app from a :class:`ServerConfig`.

:func:`create_app` is the one place that decides what the server serves:

- ``/connection/websocket`` (and ``/connection/uni_websocket`` with ``uni_websocket``);
- ``/api/...``, the HTTP server API, when ``api_key`` is set;
- ``/metrics`` (Prometheus, see :mod:`.metrics`) unless ``metrics`` is off;
- ``/health`` (the process answers) and ``/ready`` (the hub started and its broker is reachable);
- ``/admin``, the admin page (:mod:`.admin`), when ``admin_password`` is set;
- the demo pages, when ``demo`` is set: :func:`fastapi_realtime.server.demo.mount_demo`
  (imported only then, so the server runs without it).

"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST

from .admin import mount_admin
from .config import ServerConfig
from .hub import ServerHub

NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's native OpenTelemetry bridge, off: otherwise every request and WebSocket asks the
OpenTelemetry API whether providers are configured (reading ``os.environ``), though the server
never configures any; its own metrics are ``/metrics``."""


def create_app(config: ServerConfig) -> FastAPI:
    """The server's FastAPI app; its hub (a :class:`ServerHub`) is ``app.state.hub``."""
    hub = ServerHub(config.hub_settings(), broker=config.make_broker(), auth=config.auth())
    state = {"started": False}
    tasks: list[asyncio.Task[Any]] = []

    async def stop_background() -> None:
        """Cancel the background jobs and wait for them (idempotent)."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with hub:
            tasks.extend(asyncio.create_task(job(hub)) for job in app.state.background)
            state["started"] = True
            try:
                yield
            finally:
                state["started"] = False
                await stop_background()

    app = FastAPI(
        title="fastapi-realtime",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=NO_TELEMETRY,
    )
    app.state.hub = hub
    app.state.config = config
    app.state.background = []
    """Coroutine functions ``job(hub)`` run as tasks while the hub runs (cancelled before it stops)."""
    app.state.stop_background = stop_background
    app.include_router(hub.router(uni_path="/connection/uni_websocket" if config.uni_websocket else None))
    if config.api_key is not None:
        app.include_router(hub.api_router(api_key=config.api_key.get_secret_value()))

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        started, broker = state["started"], hub.broker.healthy
        ok = started and broker
        return JSONResponse({"ready": ok, "hub_started": started, "broker": broker}, status_code=200 if ok else 503)

    if config.metrics:

        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(hub.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    if config.admin_password is not None:
        mount_admin(app, hub, config.admin_password.get_secret_value())

    if config.demo:
        demo = importlib.import_module("fastapi_realtime.server.demo")  # imported only when asked for
        demo.mount_demo(app, hub, config)
    return app
