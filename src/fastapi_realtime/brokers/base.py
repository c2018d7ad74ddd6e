"""The broker interface: the only thing that crosses processes.

A broker does three jobs for the hubs of every process that share it:

1. **Fan-out.** ``publish`` delivers a publication to every hub that subscribed to the
   channel, this one included, through :meth:`BrokerEvents.on_publication`. Delivery is
   at most once and in publish order per channel; a hub that is not subscribed gets nothing.
2. **History.** For channels published with ``history_size > 0`` the broker gives each
   publication the next offset of the channel's stream and keeps the newest ``history_size``
   of them for ``history_ttl`` seconds. Offset assignment, saving to history and fan-out are
   one atomic step per channel, so every subscriber sees offsets in order without gaps. A
   stream has an epoch; when the stream is lost (restart, flush, ``meta_ttl`` passed without
   publications) it starts again at offset 0 under a new epoch. Reading the position of a
   channel that was never published to creates only a short-lived, capped placeholder (see
   :meth:`Broker.history`), so naming channels costs no lasting state.
3. **Presence.** A map per channel from client id to :class:`ClientInfo`, each entry living
   ``ttl`` seconds unless added again, so entries of a crashed process disappear by themselves.

Join/leave events and control messages (disconnect a user on every node, broadcast to every
connection) are fanned out like publications but never kept.

A broker that talks to a shared backend (Redis) can lose it. Then calls that need the backend
raise :class:`BrokerUnavailable` within the broker's timeout instead of hanging, and the broker
tells the hub through :meth:`BrokerEvents.on_broker_state`; :attr:`Broker.healthy` says the same
to readiness probes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

from ..protocol.messages import ClientInfo, Publication, StreamPosition


class BrokerError(Exception):
    """Base class of the errors a broker raises."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached within its timeout; nothing was published.

    Raised by ``start`` when the backend is unreachable, and by publish, history and presence
    calls while it is down. The message says what to check (URL with the password redacted).
    """


class StreamLimitExceeded(BrokerError):
    """Reading the position of a never-published channel would create one placeholder more
    than the broker's ``max_empty_streams`` allows. Nothing was created; the hub answers 106."""


class BrokerEvents(Protocol):
    """What a broker calls when something arrives. Implemented by the hub, given to ``start``.

    The calls are synchronous: a handler must not block and must not raise.
    """

    def on_publication(self, channel: str, pub: Publication) -> None: ...
    def on_join(self, channel: str, info: ClientInfo) -> None: ...
    def on_leave(self, channel: str, info: ClientInfo) -> None: ...
    def on_control(self, data: bytes) -> None: ...

    def on_broker_state(self, up: bool) -> None:
        """The broker lost (``False``) or regained (``True``) its connection to the shared backend.

        After a ``True``, events published meanwhile may have been missed: the hub then checks
        the stream positions of its channels. :class:`MemoryBroker` never calls it.
        """


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """How to keep a publication: 0 ``history_size`` means fan-out only (offset 0, no epoch)."""

    history_size: int = 0
    history_ttl: float = 300.0
    meta_ttl: float = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """Publications (oldest first unless asked reversed) and the stream's current position."""

    publications: list[Publication]
    position: StreamPosition


class Broker(ABC):
    """Base class of :class:`MemoryBroker` and every other broker. See the module docstring."""

    @abstractmethod
    async def start(self, events: BrokerEvents) -> None:
        """Connect and begin delivering events to ``events``. Called once by the hub."""

    @property
    def healthy(self) -> bool:
        """Whether the broker is connected to its backend now (for readiness probes).

        The base implementation (a broker without a backend to lose) is always ``True``.
        """
        return True

    @abstractmethod
    async def close(self) -> None:
        """Stop delivering events and release connections. Idempotent."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving publications and join/leave events of ``channel``."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving events of ``channel``."""

    @abstractmethod
    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> StreamPosition:
        """Save ``pub`` to history when ``opts`` asks for it, then fan it out.

        Returns the position of the publication (offset 0 and epoch ``""`` without history).
        The delivered publication carries the assigned offset.
        """

    @abstractmethod
    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        """Fan out a join event to the hubs subscribed to ``channel``."""

    @abstractmethod
    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        """Fan out a leave event to the hubs subscribed to ``channel``."""

    @abstractmethod
    async def publish_control(self, data: bytes) -> None:
        """Deliver ``data`` to :meth:`BrokerEvents.on_control` of every hub, this one included."""

    @abstractmethod
    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int | None, reverse: bool, meta_ttl: float
    ) -> HistoryResult:
        """Read the stream of ``channel``.

        ``since`` pages from a position (its epoch is not checked here): forward it keeps the
        publications with a larger offset, with ``reverse`` those with a smaller one. ``limit``
        caps how many are returned (``None``: all, 0: none, only the position). ``reverse``
        returns newest first.

        A channel with no stream (never published to, or its stream was lost) gets a
        placeholder: offset 0 and a new epoch, kept ``meta_ttl`` seconds (the hub passes the
        short ``history_empty_ttl``); reading it again while it is still empty keeps it at least
        ``meta_ttl`` seconds from then. The first publication within that time continues the
        epoch (so a client positioned at offset 0 recovers from it) and keeps the stream for the
        publication's ``meta_ttl``; after it, the first publication starts a new epoch. Nothing
        else is stored before a publication. A broker caps the placeholders it creates
        (``max_empty_streams``) and raises :class:`StreamLimitExceeded` beyond the cap.
        """

    @abstractmethod
    async def remove_history(self, channel: str) -> None:
        """Drop the publications of ``channel`` (its offset and epoch stay)."""

    @abstractmethod
    async def add_presence(self, channel: str, info: ClientInfo, ttl: float) -> None:
        """Add or refresh the presence entry of ``info.client`` in ``channel`` for ``ttl`` seconds."""

    @abstractmethod
    async def remove_presence(self, channel: str, client_id: str) -> None:
        """Remove one presence entry."""

    @abstractmethod
    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """The live presence entries of ``channel``: client id -> info."""

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """Number of clients and of distinct users present in ``channel``."""
        entries = await self.presence(channel)
        return len(entries), len({info.user for info in entries.values()})
