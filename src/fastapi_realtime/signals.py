"""Graceful shutdown on SIGTERM/SIGINT under a server that handles signals itself.

uvicorn, on SIGTERM, closes every WebSocket with 1012 and only then runs the app's lifespan
shutdown, so a hub closed there finds its clients already gone, their queues dropped.
:class:`SignalChain` puts the hub first: installed at hub start, it replaces the server's
handler of SIGTERM and SIGINT by one that runs the hub's drain (clients told 3001 with
their queues flushed, bounded by ``shutdown_timeout``) and then calls the server's handler,
which proceeds as it would have. A second signal during the drain goes to the server's
handler at once (uvicorn: a second Ctrl+C forces the exit).

It only chains a handler installed with ``signal.signal`` by Python code (uvicorn's, the
standalone server's); the interpreter's defaults (``SIG_DFL``, ``SIG_IGN``, the
``KeyboardInterrupt`` of SIGINT) are left alone, as is any handler outside the main thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

log = logging.getLogger("fastapi_realtime.signals")

SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any]


class SignalChain:
    """Runs ``drain`` on SIGTERM/SIGINT before the handler that was installed before it."""

    def __init__(self, drain: Callable[[], Awaitable[None]]) -> None:
        self._drain = drain
        self._previous: dict[int, Handler] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None
        self._passed_on: set[int] = set()
        """Signals already handed to the previous handler during this drain."""

    def install(self) -> None:
        """Chain in front of the current handlers, where that is possible (see the module)."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        self._draining = None
        self._passed_on.clear()
        for sig in SIGNALS:
            previous = signal.getsignal(sig)
            if callable(previous) and previous is not signal.default_int_handler:
                self._previous[sig] = previous
                signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Put the previous handlers back where this chain is still the current one. A chain
        that another one was installed on top of stays in that one's path: from now on it
        passes signals straight on."""
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._handle:
                signal.signal(sig, previous)
        self._loop = None

    def _handle(self, sig: int, frame: FrameType | None) -> None:
        loop = self._loop
        if loop is None or self._draining is not None or loop.is_closed():
            self._pass_on(sig)
            return
        log.info("signal %s: closing every client with 3001 before the server shuts down", signal.Signals(sig).name)
        loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain_then_pass_on(sig))

    async def _drain_then_pass_on(self, sig: int) -> None:
        try:
            await self._drain()
        except Exception:
            log.exception("draining the hub on signal %s failed", sig)
        finally:
            if sig not in self._passed_on:  # a second signal already went on: do not repeat it
                self._pass_on(sig)

    def _pass_on(self, sig: int) -> None:
        self._passed_on.add(sig)
        previous = self._previous.get(sig)
        if previous is not None:
            previous(sig, None)
