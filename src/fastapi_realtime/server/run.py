"""Run the server: one process with uvicorn configured by :func:`fastapi_realtime.uvicorn_config`,
or ``workers`` processes under uvicorn's supervisor, each building its app from the config
handed over in the environment (:func:`.workers.app_from_environment`).

The broker is tried first: when Redis cannot be reached the command logs one line and exits
with :data:`STARTUP_FAILURE`.

SIGTERM or SIGINT stops it gracefully: clients are told ``shutdown`` (3001) and the hub closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from ..brokers.base import BrokerError
from ..hub import Node
from ..serve import uvicorn_config
from .app import create_app
from .config import ServerConfig
from .logs import configure_logging
from .workers import WORKER_CONFIG_ENV, WorkerHTTPProtocol, app_from_environment

log = logging.getLogger("fastapi_realtime.server")

STARTUP_FAILURE = 3
"""Exit status when the server could not start (e.g. Redis unreachable), as uvicorn's."""


def serve(config: ServerConfig) -> int:
    """Serve ``config`` until SIGTERM/SIGINT; the exit status (0, or :data:`STARTUP_FAILURE`)."""
    configure_logging(config.log_format, config.log_level)
    settings = config.hub_settings()
    # (--demo needs token.hmac_secret, and create_app says so in one line)
    if config.auth() is None and not (settings.allow_anonymous or settings.insecure or config.demo):
        log.warning(
            "no token key (token.hmac_secret or token.public_key) and limits.allow_anonymous is false: "
            "every client connect will be refused with 101"
        )
    problem = asyncio.run(_broker_problem(config))
    if problem is not None:
        log.error("cannot start: %s", problem)
        return STARTUP_FAILURE
    common: dict[str, Any] = {"log_config": None, "log_level": config.log_level, "timeout_graceful_shutdown": None}
    if config.workers == 1:
        app = create_app(config)
        server = _HubFirstServer(
            uvicorn_config(app, host=config.host, port=config.port, hub=app.state.hub, **common), app
        )
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    os.environ[WORKER_CONFIG_ENV] = orjson.dumps(config.revealed()).decode()
    uv = uvicorn_config(
        f"{app_from_environment.__module__}:{app_from_environment.__qualname__}",
        factory=True,
        host=config.host,
        port=config.port,
        settings=settings,
        workers=config.workers,
        http=f"{WorkerHTTPProtocol.__module__}:{WorkerHTTPProtocol.__qualname__}",
        **common,
    )
    sock = uv.bind_socket()
    Multiprocess(uv, sockets=[sock]).run()
    return 0


class _HubFirstServer(uvicorn.Server):
    """Stops the app's background jobs and closes the hub before uvicorn closes the connections,
    so that clients are told 3001 ``shutdown`` rather than uvicorn's 1012 (the lifespan does
    both again, as no-ops)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.app.state.stop_background()
        await self.app.state.hub.close()
        await super().shutdown(sockets)


async def _broker_problem(config: ServerConfig) -> str | None:
    """Why a hub of this config cannot start (its broker unreachable, ``insecure`` without its
    environment variable), or ``None`` (one was started and closed)."""
    try:
        async with Node(config.hub_settings(), broker=config.make_broker()):
            return None
    except (BrokerError, RuntimeError) as exc:
        return str(exc)
