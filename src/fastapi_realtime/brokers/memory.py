"""The in-memory broker: one process, zero set-up. The default."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from ..protocol.messages import ClientInfo, Publication, StreamPosition
from .base import Broker, BrokerEvents, HistoryResult, PublishOptions, StreamLimitExceeded


def new_epoch() -> str:
    """A fresh random epoch string."""
    return secrets.token_urlsafe(6)


@dataclass(slots=True)
class _Stream:
    epoch: str
    meta_expires: float
    top: int = 0
    pubs: deque[Publication] = field(default_factory=deque)
    pubs_expire: float = 0.0


class MemoryBroker(Broker):
    """Keeps streams and presence in dicts and fans out by direct calls.

    ``clock`` (monotonic seconds) is injectable so tests can move time. Expired streams and
    presence entries are dropped when touched and by a sweep every ``sweep_interval`` seconds.
    ``max_empty_streams`` caps the placeholders of never-published channels (see
    :meth:`Broker.history`); past it, reading such a channel raises :class:`StreamLimitExceeded`.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 60.0,
        max_empty_streams: int = 100_000,
    ) -> None:
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._max_empty_streams = max_empty_streams
        self._events: BrokerEvents | None = None
        self._subscribed: set[str] = set()
        self._streams: dict[str, _Stream] = {}
        self._empty: set[str] = set()
        self._last_full_sweep = -1.0
        self._presence: dict[str, dict[str, tuple[ClientInfo, float]]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, events: BrokerEvents) -> None:
        self._events = events
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="memory-broker-sweep")

    async def close(self) -> None:
        self._events = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    def _live_stream(self, channel: str) -> _Stream | None:
        """The stream of ``channel`` unless it is missing or expired (expired history dropped)."""
        now = self._clock()
        stream = self._streams.get(channel)
        if stream is not None and stream.meta_expires <= now:
            del self._streams[channel]
            self._empty.discard(channel)
            return None
        if stream is not None and stream.pubs and stream.pubs_expire <= now:
            stream.pubs.clear()
        return stream

    def _placeholder(self, channel: str, meta_ttl: float) -> _Stream:
        """A new empty stream for a read, within ``max_empty_streams``."""
        if len(self._empty) >= self._max_empty_streams and self._clock() - self._last_full_sweep >= 1.0:
            self._last_full_sweep = self._clock()  # at most one full sweep a second, even under a flood
            self.sweep()
        if len(self._empty) >= self._max_empty_streams:
            raise StreamLimitExceeded(
                f"{self._max_empty_streams} channels without publications already have a position"
            )
        stream = _Stream(epoch=new_epoch(), meta_expires=self._clock() + meta_ttl)
        self._streams[channel] = stream
        self._empty.add(channel)
        return stream

    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> StreamPosition:
        position = StreamPosition(0, "")
        if opts.history_size > 0:
            now = self._clock()
            stream = self._live_stream(channel)
            if stream is None:
                stream = self._streams[channel] = _Stream(epoch=new_epoch(), meta_expires=now)
            self._empty.discard(channel)
            stream.top += 1
            pub = replace(pub, offset=stream.top)
            stream.pubs.append(pub)
            while len(stream.pubs) > opts.history_size:
                stream.pubs.popleft()
            stream.pubs_expire = now + opts.history_ttl
            stream.meta_expires = now + opts.meta_ttl
            position = StreamPosition(stream.top, stream.epoch)
        if self._events is not None and channel in self._subscribed:
            self._events.on_publication(channel, pub)
        return position

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        if self._events is not None and channel in self._subscribed:
            self._events.on_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        if self._events is not None and channel in self._subscribed:
            self._events.on_leave(channel, info)

    async def publish_control(self, data: bytes) -> None:
        if self._events is not None:
            self._events.on_control(data)

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int | None, reverse: bool, meta_ttl: float
    ) -> HistoryResult:
        stream = self._live_stream(channel)
        if stream is None:
            stream = self._placeholder(channel, meta_ttl)
        elif stream.top == 0:
            stream.meta_expires = max(stream.meta_expires, self._clock() + meta_ttl)
        position = StreamPosition(stream.top, stream.epoch)
        if limit == 0:
            return HistoryResult([], position)
        if since is None:
            pubs = list(stream.pubs)
        elif reverse:
            pubs = [p for p in stream.pubs if p.offset < since.offset]
        else:
            pubs = [p for p in stream.pubs if p.offset > since.offset]
        if reverse:
            pubs.reverse()
        if limit is not None:
            pubs = pubs[:limit]
        return HistoryResult(pubs, position)

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None:
            stream.pubs.clear()

    async def add_presence(self, channel: str, info: ClientInfo, ttl: float) -> None:
        self._presence.setdefault(channel, {})[info.client] = (info, self._clock() + ttl)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        entries = self._presence.get(channel)
        if entries is not None:
            entries.pop(client_id, None)
            if not entries:
                del self._presence[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        now = self._clock()
        entries = self._presence.get(channel, {})
        return {cid: info for cid, (info, expires) in entries.items() if expires > now}

    def sweep(self) -> None:
        """Drop expired streams, history and presence entries now."""
        now = self._clock()
        for channel, stream in list(self._streams.items()):
            if stream.meta_expires <= now:
                del self._streams[channel]
                self._empty.discard(channel)
            elif stream.pubs and stream.pubs_expire <= now:
                stream.pubs.clear()
        for channel, entries in list(self._presence.items()):
            for cid in [cid for cid, (_, expires) in entries.items() if expires <= now]:
                del entries[cid]
            if not entries:
                del self._presence[channel]

    @property
    def stats(self) -> dict[str, int]:
        """Counts of what the broker holds: for leak checks and metrics."""
        return {
            "subscribed_channels": len(self._subscribed),
            "streams": len(self._streams),
            "empty_streams": len(self._empty),
            "presence_channels": len(self._presence),
            "presence_entries": sum(len(e) for e in self._presence.values()),
        }

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()
