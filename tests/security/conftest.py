"""Shared fixtures of the adversarial probes: every test here runs a real server and fails on
any traceback or ERROR line in what that server logged.

``server_log`` captures every log record of the run (the app's, uvicorn's error and access logs,
asyncio's), formatted as the server would write it, traceback included. Attach it once the
``uvicorn.Config`` is made (it replaces the handlers of uvicorn's loggers):
:func:`serving` does that for you.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket
from hypothesis import HealthCheck, settings
from servers import RunningServer, running_config

from fastapi_realtime import Hub
from fastapi_realtime.transports.uvicorn_ws import RealtimeWebSocketProtocol

settings.register_profile(
    "ci", max_examples=1000, deadline=None, derandomize=False, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "soak", max_examples=100_000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
"""The fuzz tests' budget: ``ci`` (``make test``, tens of seconds in all) or ``soak`` (``make soak``)."""

CAPTURED_LOGGERS = ("", "uvicorn", "uvicorn.access")
"""Root (the app and asyncio propagate there) and uvicorn's two loggers that do not propagate."""


PROJECT_CODE = ("/fastapi_realtime/", "/tests/")
"""A traceback through these paths is the project's (or a test app's)."""


class ServerLog(logging.Handler):
    """Every record a server logged, as formatted lines (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self._texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record)
        self.records.append(record)
        self._texts.append(text)
        self.lines.extend(text.splitlines())

    @contextlib.contextmanager
    def attached(self) -> Iterator[None]:
        """Listen on the server's loggers for the block (enter it after the server was configured)."""
        loggers = [logging.getLogger(name) for name in CAPTURED_LOGGERS]
        for logger in loggers:
            logger.addHandler(self)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeHandler(self)

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def assert_clean(self) -> None:
        """No ERROR from the project, no traceback through the project's code or the app's (which
        uvicorn reports as "Exception in ASGI application"). uvicorn's own complaints about a
        client (e.g. its ERROR line with a traceback for an invalid UTF-8 text frame) are uvicorn's."""
        bad = [
            text
            for record, text in zip(self.records, self._texts, strict=True)
            if (record.levelno >= logging.ERROR and record.name.split(".")[0] == "fastapi_realtime")
            or (record.exc_info and any(place in text for place in PROJECT_CODE))
            or "Exception in ASGI application" in text
        ]
        assert not bad, "the server logged project errors or tracebacks:\n" + "\n".join(self.lines)


@pytest.fixture
def server_log() -> Iterator[ServerLog]:
    """The log of the servers a test runs; the test fails if it holds a project traceback or error."""
    log = ServerLog()
    yield log
    log.assert_clean()


@contextlib.asynccontextmanager
async def serving(config: uvicorn.Config, log: ServerLog) -> AsyncIterator[RunningServer]:
    """Serve ``config`` on a free port with ``log`` listening from the start of the run."""
    with log.attached():  # uvicorn configured its logging when ``config`` was made
        async with running_config(config) as server:
            yield server


def hub_app(hub: Hub) -> FastAPI:
    """An app for ``hub``: its protocol endpoints (``/connection/websocket`` and
    ``/connection/uni_websocket``) and ``/json``, a tutorial-API endpoint echoing JSON messages."""
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path="/connection/uni_websocket"))

    @app.websocket("/json")
    async def echo_json(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            async for value in conn.iter_json():
                await conn.send_json(value)

    return app


def quiet_config(app: Any, **options: Any) -> uvicorn.Config:
    """A uvicorn config as the tests elsewhere use it, with info-level logs for the probes."""
    defaults: dict[str, Any] = {
        "log_level": "info",
        "lifespan": "on",
        "ws_ping_interval": None,
        "ws": RealtimeWebSocketProtocol,
    }
    defaults.update(options)
    return uvicorn.Config(app, **defaults)
