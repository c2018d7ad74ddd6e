"""Run the server: one process with :func:`fastapi_realtime.run`, or ``workers`` processes
under uvicorn's supervisor, each building its app from the config handed over in the
environment (:func:`.workers.app_from_environment`).

SIGTERM or SIGINT stops it gracefully: clients are told ``shutdown`` (3001) and the hub closes.
"""

from __future__ import annotations

import os
from typing import Any

import orjson
from uvicorn.supervisors import Multiprocess

from ..serve import run, uvicorn_config
from .app import create_app
from .config import ServerConfig
from .logs import configure_logging
from .workers import WORKER_CONFIG_ENV, WorkerHTTPProtocol


def serve(config: ServerConfig) -> None:
    """Serve ``config`` until SIGTERM/SIGINT."""
    configure_logging(config.log_format, config.log_level)
    common: dict[str, Any] = {"log_config": None, "log_level": config.log_level, "timeout_graceful_shutdown": None}
    if config.workers == 1:
        app = create_app(config)
        run(app, host=config.host, port=config.port, hub=app.state.hub, **common)
        return
    os.environ[WORKER_CONFIG_ENV] = orjson.dumps(config.revealed()).decode()
    uv = uvicorn_config(
        "fastapi_realtime.server.app:app_from_environment",
        factory=True,
        host=config.host,
        port=config.port,
        settings=config.hub_settings(),
        workers=config.workers,
        http=f"{WorkerHTTPProtocol.__module__}:{WorkerHTTPProtocol.__qualname__}",
        **common,
    )
    sock = uv.bind_socket()
    Multiprocess(uv, sockets=[sock]).run()
