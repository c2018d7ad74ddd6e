"""A token bucket. Pure: the clock is passed in."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Allows ``rate`` events per second on average and ``burst`` at once."""

    __slots__ = ("_clock", "_stamp", "_tokens", "burst", "rate")  # one per connection and per IP

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()

    def take(self) -> bool:
        """Spend one token; False when the bucket is empty."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def full(self) -> bool:
        """Whether the bucket has refilled completely (forgetting it changes nothing)."""
        return self._tokens + (self._clock() - self._stamp) * self.rate >= self.burst


class RefusalWindow:
    """Counts refusals in windows of ``window`` seconds; says when there were more than ``limit``.

    A window opens at the first refusal after the previous one closed and lasts ``window``
    seconds, however many events are accepted meanwhile: a client refused at a sustained rate
    above ``limit / window`` per second is caught within one window.
    """

    __slots__ = ("_clock", "_count", "_opened", "limit", "window")  # one per connection

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._opened = 0.0
        self._count = 0

    def refuse(self) -> bool:
        """Count one refusal; True when the current window now holds more than ``limit``."""
        now = self._clock()
        if self._count == 0 or now - self._opened >= self.window:
            self._opened, self._count = now, 0
        self._count += 1
        return self._count > self.limit
