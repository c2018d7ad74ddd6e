"""Real uvicorn servers on free 127.0.0.1 ports for end-to-end tests.

The listening socket is bound before the server starts; the context is entered once uvicorn's
startup (the app's lifespan startup included) has completed, so the hub is running. No polling,
no sleeps. WebSockets are served by this project's ``RealtimeWebSocketProtocol`` unless the
caller passes ``ws=`` (e.g. ``ws="websockets-sansio"``, uvicorn's own).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from fastapi_realtime.transports.uvicorn_ws import RealtimeWebSocketProtocol


@dataclass
class RunningServer:
    host: str
    port: int
    server: uvicorn.Server

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


def bound_socket() -> socket.socket:
    """A listening TCP socket on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


@contextlib.asynccontextmanager
async def running_server(app: Any, **config: Any) -> AsyncIterator[RunningServer]:
    """Serve ``app`` with uvicorn in this event loop for the duration of the block."""
    options: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "on",
        "ws_ping_interval": None,
        "ws": RealtimeWebSocketProtocol,
    }
    options.update(config)
    async with running_config(uvicorn.Config(app, **options)) as server:
        yield server


@contextlib.asynccontextmanager
async def running_config(config: uvicorn.Config) -> AsyncIterator[RunningServer]:
    """:func:`running_server` for a ready-made ``uvicorn.Config`` (its host and port are ignored)."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # tests own the signals
    started = asyncio.Event()
    startup = server.startup

    async def startup_then_tell(sockets: list[socket.socket] | None = None) -> None:
        await startup(sockets=sockets)
        started.set()

    server.startup = startup_then_tell  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    # Enter once the app's lifespan startup ran (the hub is started), or once the server gave
    # up (a failing startup, which some tests expect).
    waiting = asyncio.ensure_future(started.wait())
    await asyncio.wait((waiting, task), return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    try:
        yield RunningServer("127.0.0.1", port, server)
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 30)
        finally:
            sock.close()


@contextlib.asynccontextmanager
async def running_server_logging_no_errors(
    app: Any, caplog: pytest.LogCaptureFixture, **config: Any
) -> AsyncIterator[RunningServer]:
    """:func:`running_server`; on exit (after the server stopped) asserts that nothing was
    logged at ERROR or above, by the app or by uvicorn."""
    uvicorn_logger = logging.getLogger("uvicorn")
    try:
        async with running_server(app, **config) as server:
            # uvicorn's logging config, applied when the server was configured, resets the handlers of
            # "uvicorn" and stops propagation there: listen on it directly, from now on.
            uvicorn_logger.addHandler(caplog.handler)
            yield server
    finally:
        uvicorn_logger.removeHandler(caplog.handler)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, "server logged errors:\n" + "\n".join(
        f"{r.name}: {r.getMessage()}\n{caplog.handler.format(r)}" for r in errors
    )
