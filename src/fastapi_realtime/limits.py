"""Admission by client IP: connections at once and new connections per second. Pure.

One :class:`IPLimits` per hub. Counts live only while they matter: an IP's entry goes once it
has no connection and its connect bucket has refilled (a sweep at most once per refill period,
``connect_burst_per_ip / connect_rate_per_ip`` seconds), so the table holds the IPs with open
connections plus those that connected within about the last two refill periods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .protocol.codes import DisconnectCode
from .protocol.errors import Disconnect
from .ratelimit import TokenBucket
from .settings import HubSettings


@dataclass(slots=True)
class _IP:
    connections: int
    connects: TokenBucket


class IPLimits:
    """``max_connections_per_ip`` (close 3504) and ``connect_rate_per_ip`` /
    ``connect_burst_per_ip`` (close 3013) for one hub."""

    def __init__(self, settings: HubSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        self._ips: dict[str, _IP] = {}
        self._refill = settings.connect_burst_per_ip / settings.connect_rate_per_ip
        """Seconds an empty connect bucket takes to fill up again."""
        self._swept = clock()

    def admit(self, ip: str) -> None:
        """Count a new connection from ``ip``, or raise :class:`Disconnect` 3013 / 3504."""
        self._sweep()
        state = self._ips.get(ip)
        if state is None:
            rate, burst = self._settings.connect_rate_per_ip, self._settings.connect_burst_per_ip
            state = self._ips[ip] = _IP(0, TokenBucket(rate, burst, self._clock))
        if not state.connects.take():
            raise Disconnect(DisconnectCode.TOO_MANY_REQUESTS)
        if state.connections >= self._settings.max_connections_per_ip:
            raise Disconnect(DisconnectCode.CONNECTION_LIMIT)
        state.connections += 1

    def release(self, ip: str) -> None:
        """A connection from ``ip`` ended."""
        state = self._ips.get(ip)
        if state is not None and state.connections > 0:
            state.connections -= 1

    def __len__(self) -> int:
        """IPs tracked now (for leak checks)."""
        return len(self._ips)

    def _sweep(self) -> None:
        """Forget the IPs with no connection and a full bucket, once per refill period."""
        now = self._clock()
        if now - self._swept < self._refill:
            return
        self._swept = now
        for ip in [ip for ip, s in self._ips.items() if s.connections == 0 and s.connects.full()]:
            del self._ips[ip]
