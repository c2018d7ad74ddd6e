"""What each worker process runs when ``serve`` starts more than one (``workers > 1``).

uvicorn's supervisor hands its config to the workers by pickling it, so the app and the
HTTP protocol are named by import strings and the resolved server config travels in the
environment variable :data:`WORKER_CONFIG_ENV`.
"""

from __future__ import annotations

import os

import orjson
from fastapi import FastAPI

from ..serve import ConnectionGuard, GuardedHTTPProtocol
from .app import create_app
from .config import ServerConfig
from .logs import configure_logging

WORKER_CONFIG_ENV = "_FASTAPI_REALTIME_WORKER_CONFIG"
"""Environment variable through which ``serve`` hands the resolved config to its workers."""


class WorkerHTTPProtocol(GuardedHTTPProtocol):
    """The guarded HTTP protocol (handshake timeout, per-IP cap) of a worker process; its
    guard is set by :func:`app_from_environment`, so the cap counts per worker."""


def app_from_environment() -> FastAPI:
    """The app of one worker process (uvicorn calls it as a factory in each worker)."""
    config = ServerConfig.model_validate(orjson.loads(os.environ[WORKER_CONFIG_ENV]))
    configure_logging(config.log_format, config.log_level)
    limits = config.hub_settings()
    WorkerHTTPProtocol.guard = ConnectionGuard(limits.handshake_timeout, limits.server_connections_per_ip)
    return create_app(config)
