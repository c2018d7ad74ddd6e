"""Position sync: find positioned subscriptions that missed publications, and make them recover.

A broker's fan-out is at most once: Redis Pub/Sub drops what is published while a node's
subscriber connection is down or stalled, and tells no one. A gap followed by another
publication is seen on delivery (:meth:`Session.deliver`); a lost *tail* is seen only by
comparing positions with the stream's top. :class:`PositionSync` does that for one hub: it reads
the top of every channel that has positioned subscribers, waits ``position_check_grace`` for the
publications that were already on their way (the top may be ahead of what was delivered only
because a publication is in flight), and then tells every subscription that is still below that
top, or in another epoch (the stream was lost), that it missed publications
(:meth:`Session.insufficient_state`: protocol clients are unsubscribed with 2500 and resubscribe,
recovering from history). Comparing with a top read *before* the grace, rather than with the
current one, keeps a stream that is published to without pause from ever looking behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping

from .brokers.base import BrokerError
from .protocol.errors import ReplyError
from .protocol.messages import StreamPosition
from .session import Session, Subscription
from .settings import HubSettings

log = logging.getLogger("fastapi_realtime.hub")

READS_AT_ONCE = 100
"""Stream tops a check reads concurrently."""


class OutageLog:
    """Logs a failing background broker call once per outage: one warning line at the first
    failure, nothing more until a call succeeds again (the broker logs the outage itself)."""

    def __init__(self) -> None:
        self.failing = False

    def failed(self, what: str, exc: BaseException) -> None:
        if not self.failing:
            self.failing = True
            log.warning("%s failed: %s; retrying in the background", what, exc)

    def succeeded(self) -> None:
        self.failing = False


class PositionSync:
    """Checks the positioned subscriptions of one hub against their streams (see the module
    docstring). ``subscribers(channel)`` maps the hub's sessions in a channel to their
    subscriptions, ``read_top`` reads a channel's stream top through the broker; failures go
    to ``outages``."""

    def __init__(
        self,
        settings: HubSettings,
        subscribers: Callable[[str], Mapping[Session, Subscription]],
        read_top: Callable[[str], Awaitable[StreamPosition]],
        outages: OutageLog,
    ) -> None:
        self.settings = settings
        self.subscribers = subscribers
        self.read_top = read_top
        self.outages = outages

    def positioned(self, channel: str) -> list[tuple[Session, Subscription]]:
        """The subscriptions of ``channel`` that track a position (and are not still subscribing)."""
        out = []
        for session, sub in self.subscribers(channel).items():
            if sub.positioned and sub.buffer is None:
                out.append((session, sub))
        return out

    async def check(self, channels: Collection[str]) -> int:
        """Check ``channels``; returns how many subscriptions were told to recover."""
        tops = await self._read_tops([name for name in channels if self.positioned(name)])
        if any(sub.offset < tops[name].offset for name in tops for _, sub in self.positioned(name)):
            await asyncio.sleep(self.settings.position_check_grace)
        recovering: set[str] = set()
        count = 0
        for name, top in tops.items():
            for session, sub in self.positioned(name):
                if (sub.epoch and sub.epoch != top.epoch) or sub.offset < top.offset:
                    session.insufficient_state(name)
                    recovering.add(name)
                    count += 1
        if count:
            log.warning(
                "position check: %d subscriptions in %d channels missed publications; they recover from history",
                count,
                len(recovering),
            )
        return count

    async def _read_tops(self, channels: list[str]) -> dict[str, StreamPosition]:
        tops: dict[str, StreamPosition] = {}
        failed = 0
        failure: BaseException | None = None
        for start in range(0, len(channels), READS_AT_ONCE):
            batch = channels[start : start + READS_AT_ONCE]
            results = await asyncio.gather(*(self.read_top(name) for name in batch), return_exceptions=True)
            for name, result in zip(batch, results, strict=True):
                if isinstance(result, StreamPosition):
                    tops[name] = result
                elif not isinstance(result, ReplyError):  # a refused position was logged where it was read
                    failed, failure = failed + 1, result
        if failure is not None and not isinstance(failure, BrokerError):
            log.error("position check failed", exc_info=failure)
        elif failure is not None:
            self.outages.failed(f"position check of {failed} of {len(channels)} channels", failure)
        elif tops:
            self.outages.succeeded()
        return tops
