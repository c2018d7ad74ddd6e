"""Real uvicorn servers on free 127.0.0.1 ports for end-to-end tests.

The listening socket is bound before the server starts, so a client can connect as soon as
the context is entered: its connection waits in the backlog until uvicorn (after the app's
lifespan startup) accepts it. No polling, no sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn


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
    sock = bound_socket()
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "on", "ws_ping_interval": None}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # tests own the signals
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield RunningServer("127.0.0.1", port, server)
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, 30)
        finally:
            sock.close()
