"""Remember the results of keyed operations for a while, so that a retry is not done twice.

A publish carrying an ``idempotency_key`` (the HTTP server API's option, as in Centrifugo)
runs once per ``(channel, key)`` within ``HubSettings.idempotency_window`` seconds: a retry
inside the window gets the first call's result without publishing again, and a retry that
arrives while the first call is still running waits for it. A call that fails (or is cancelled)
is forgotten, so its retry runs for real. The memory is per hub (per process).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class IdempotencyCache(Generic[T]):
    """Results of keyed calls, each kept ``window`` seconds, at most ``max_keys`` at once.

    Past ``max_keys`` the oldest entry is forgotten early (its key would run again).
    ``clock`` returns seconds; injected so tests can move time.
    """

    def __init__(self, window: float, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, asyncio.Future[T]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """Return the remembered result of ``key``, or await ``call()`` and remember its result."""
        now = self._clock()
        self._expire(now)
        while (entry := self._entries.get(key)) is not None:
            try:
                return await asyncio.shield(entry[1])
            except asyncio.CancelledError:
                if not entry[1].cancelled():
                    raise  # this caller was cancelled
                # The first call was cancelled before it finished: this one runs it instead.
        while len(self._entries) >= self.max_keys:
            self._entries.popitem(last=False)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._entries[key] = (now + self.window, future)
        try:
            result = await call()
        except BaseException as exc:
            if self._entries.get(key, (0.0, None))[1] is future:
                del self._entries[key]
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()  # waiters re-raise it; nobody else needs to retrieve it
            else:
                future.cancel()
            raise
        future.set_result(result)
        return result

    def _expire(self, now: float) -> None:
        while self._entries:
            expires_at, _ = next(iter(self._entries.values()))
            if expires_at > now:
                return
            self._entries.popitem(last=False)
