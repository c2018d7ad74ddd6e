"""The hub core: channels, local subscribers, fan-out, and the publish/history/presence API.

:class:`Node` is everything a hub is apart from its FastAPI glue; :class:`fastapi_realtime.Hub`
adds the routes and the tutorial-style connection API on top.

A hub counts subscribers locally and touches the broker only when a channel gets its first
subscriber on this hub or loses its last one. Fan-out is a loop of :meth:`Session.deliver`
calls, which never await, so publishing to a channel with ten thousand subscribers costs ten
thousand queue appends and one encoding of the payload per codec.

Every piece of state lives on the instance: two hubs in one process share nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import orjson

from . import connlog
from ._version import __version__
from .brokers.base import Broker, BrokerError, HistoryResult, PublishOptions, StreamLimitExceeded
from .brokers.memory import MemoryBroker
from .channels import Channel, parse_channel
from .exceptions import FeatureNotEnabled, HubNotRunning
from .gctuning import tune_gc
from .hooks import Hooks, TokenVerifier
from .idempotency import IdempotencyCache
from .limits import IPLimits
from .observe import Observer
from .positions import OutageLog, PositionSync
from .protocol.codecs import Codec
from .protocol.codes import DisconnectCode, ErrorCode, UnsubscribeCode
from .protocol.errors import Disconnect, ReplyError
from .protocol.messages import ClientInfo, Publication, RawJSON, StreamPosition, from_raw, to_raw
from .session import Flusher, Session, Subscription, Transport
from .settings import INSECURE_ENV, HubSettings
from .signals import SignalChain

log = logging.getLogger("fastapi_realtime.hub")


async def stream_history(
    broker: Broker, channel: str, since: StreamPosition | None, limit: int | None, reverse: bool, empty_ttl: float
) -> HistoryResult:
    """``broker.history`` with a never-published channel's position kept ``empty_ttl`` seconds;
    :class:`ReplyError` 106 when the broker's cap on such positions is reached."""
    try:
        return await broker.history(channel, since=since, limit=limit, reverse=reverse, meta_ttl=empty_ttl)
    except StreamLimitExceeded as exc:
        log.warning("position of %s refused: %s", channel, exc)
        raise ReplyError(ErrorCode.LIMIT_EXCEEDED, "too many channels without publications") from None


@dataclass(slots=True)
class _ChannelState:
    subscribers: dict[Session, Subscription] = field(default_factory=dict)
    """Each session in the channel with its subscription, in the order they subscribed."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    broker_subscribed: bool = False
    delta_subscribers: int = 0
    """Sessions here with delta compression; while any, ``last_data`` is kept."""
    last_data: RawJSON | None = None
    """The payload of the channel's latest publication (the base of the next delta)."""


@dataclass(frozen=True, slots=True)
class HistoryPublication:
    """One publication of :meth:`Node.history`, as server code sees it.

    ``data`` is the decoded payload; ``user``, ``client`` and ``info`` (the decoded connection
    info) say who published it (empty for server publications); ``time`` is a Unix time in
    milliseconds.
    """

    data: Any
    offset: int = 0
    time: int = 0
    tags: dict[str, str] | None = None
    user: str = ""
    client: str = ""
    info: Any = None

    @classmethod
    def of(cls, pub: Publication) -> HistoryPublication:
        publisher = pub.info
        return cls(
            data=from_raw(pub.data),
            offset=pub.offset,
            time=pub.time,
            tags=None if pub.tags is None else dict(pub.tags),
            user=publisher.user if publisher else "",
            client=publisher.client if publisher else "",
            info=from_raw(publisher.conn_info) if publisher else None,
        )


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """What :meth:`Node.history` returns: publications (oldest first unless asked reversed)
    and the stream's current position."""

    publications: list[HistoryPublication]
    position: StreamPosition


class Node:
    """Channels, presence and history for every connection of one process.

    Use it as an async context manager, or pass :meth:`lifespan` to ``FastAPI(lifespan=...)``.
    ``broker`` defaults to a fresh :class:`MemoryBroker` (one process); hubs in several
    processes scale out by sharing one broker, the only thing that crosses processes.
    ``auth`` checks connection and subscription tokens; ``hooks`` holds the in-process hooks
    (see :mod:`.hooks`).
    """

    def __init__(
        self,
        settings: HubSettings | None = None,
        *,
        broker: Broker | None = None,
        auth: TokenVerifier | None = None,
    ) -> None:
        self.settings = settings or HubSettings()
        self.broker = broker or MemoryBroker()
        self.auth = auth
        self.hooks = Hooks()
        self._channels: dict[str, _ChannelState] = {}
        self._sessions: dict[str, Session] = {}
        self._users: dict[str, set[Session]] = {}
        self._ip_limits = IPLimits(self.settings)
        self._session_ips: dict[str, str] = {}
        """Client IP of each session that came with one (for ``IPLimits.release``)."""
        self._started = False
        self._closing = False
        self._ever_started = False
        self._told_not_started = False
        self._signals = SignalChain(self._close_sessions)
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self._presence_task: asyncio.Task[None] | None = None
        self._position_task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._broker_up = True
        self._outages = OutageLog()
        self._positions = PositionSync(self.settings, self._subscribers, self._stream_top, self._outages)
        self._slice_started = 0.0
        self._flusher = Flusher()
        self.on_session_closed: list[Callable[[Session], Awaitable[None]]] = []
        """Coroutines called with each session after it closed and left every channel."""
        self.observer = Observer()
        """Told about commands, for metrics (see :mod:`.observe`); a no-op by default."""
        self.node_id = secrets.token_hex(8)
        """This hub's id (``info``); unique per hub instance."""
        self._emulated: dict[str, Callable[[str], bool]] = {}
        """Emulation session key -> the inbox of its stream (see :meth:`emulate`)."""
        self._started_at = time.monotonic()
        self._published_once: IdempotencyCache[StreamPosition] = IdempotencyCache(
            self.settings.idempotency_window, self.settings.idempotency_max_keys
        )
        self.on_broker_state_changed: list[Callable[[bool], None]] = []
        """Functions called with ``False`` when the broker lost its backend (Redis) and with
        ``True`` when it is back; see :attr:`broker_healthy`. They must not block."""

    # -- lifetime ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the broker and the presence refresher. Idempotent.

        With ``handle_signals`` (the default), SIGTERM and SIGINT first close every client
        with 3001 (see :mod:`.signals`), then reach the server's own handler.
        """
        if self._started:
            return
        self._check_insecure()
        await self.broker.start(self)
        if self.settings.tune_gc:
            tune_gc()
        self._slice_started = asyncio.get_running_loop().time()
        self._started_at = time.monotonic()
        self._presence_task = asyncio.create_task(self._refresh_presence_forever(), name="hub-presence")
        if self.settings.position_check_interval > 0:
            self._position_task = asyncio.create_task(self._check_positions_forever(), name="hub-positions")
        self._broker_up = True
        self._started = self._ever_started = True
        self._closing = False
        if self.settings.handle_signals:
            self._signals.install()

    def _check_insecure(self) -> None:
        if not self.settings.insecure:
            return
        name, value = INSECURE_ENV
        if os.environ.get(name) != value:
            raise RuntimeError(
                f"HubSettings(insecure=True) lets every client do anything (development only); "
                f"set the environment variable {name}={value!r} to start such a hub"
            )
        log.warning("INSECURE hub: every client may connect without a token and do anything (development only)")

    async def close(self) -> None:
        """Shut down gracefully: refuse new sessions, close every session with 3001
        ``shutdown`` (each flushes its queue and may finish the command it is running),
        wait for them up to ``shutdown_timeout``, then stop the broker."""
        if not self._started:
            return
        self._signals.uninstall()
        await self._close_sessions()
        for task in (self._presence_task, self._position_task, self._resync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._presence_task = self._position_task = self._resync_task = None
        await self.broker.close()
        self._started = False

    async def _close_sessions(self) -> None:
        self._closing = True
        for session in list(self._sessions.values()):
            session.close(DisconnectCode.SHUTDOWN)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._no_sessions.wait(), self.settings.shutdown_timeout)

    def _require_running(self) -> None:
        """Raise :class:`HubNotRunning` unless the hub is started (closing still counts: the
        broker is up until :meth:`close` ends)."""
        if not self._started:
            raise HubNotRunning() if not self._ever_started else HubNotRunning("the hub is closed")

    async def wait_idle(self) -> None:
        """Wait until no session is open (every one closed and detached)."""
        await self._no_sessions.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """A FastAPI/Starlette lifespan: ``FastAPI(lifespan=hub.lifespan)``."""
        async with self:
            yield

    # -- sessions ---------------------------------------------------------------------

    def open_session(
        self,
        transport: Transport,
        codec: Codec,
        *,
        user: str | None = "",
        conn_info: RawJSON | None = None,
        client_ip: str | None = None,
    ) -> Session:
        """Create a session for a new connection. Raises :class:`Disconnect` when the hub is
        not running (3001), already holds ``max_connections`` sessions, or ``user`` its
        ``max_connections_per_user``, or ``client_ip`` its ``max_connections_per_ip`` (3504),
        or ``client_ip`` connects faster than ``connect_rate_per_ip`` allows (3013).

        ``user=None``: not authenticated yet; the session gets no broadcasts and no server-side
        subscriptions until :meth:`set_user` says who it is. ``client_ip``: the peer's address
        (``websocket.client.host``); ``None`` (unknown) skips the per-IP limits.
        """
        refusal = self._refusal(user, client_ip)
        if refusal is not None:
            exc, why = refusal
            connlog.refused(exc.code, exc.reason, ip=client_ip, user=user or "", why=why)
            raise exc
        session = Session(
            transport,
            codec,
            self.settings,
            user=user or "",
            conn_info=conn_info,
            flusher=self._flusher,
            on_ended=self._detach,
        )
        if client_ip is not None:
            self._session_ips[session.id] = client_ip
        self._sessions[session.id] = session
        if user is not None:
            self.set_user(session, user, conn_info)
        self._no_sessions.clear()
        return session

    def _refusal(self, user: str | None, client_ip: str | None) -> tuple[Disconnect, str] | None:
        """Why a new connection of ``user`` from ``client_ip`` is refused (see
        :meth:`open_session`): the close and the setting behind it; ``None``: admitted."""
        if not self._ever_started:
            if not self._told_not_started:
                self._told_not_started = True
                log.error("refusing connections with 3004: %s", HubNotRunning())
            return Disconnect(DisconnectCode.INTERNAL), "hub not started"
        if not self._started or self._closing:
            return Disconnect(DisconnectCode.SHUTDOWN), "hub closing"
        if len(self._sessions) >= self.settings.max_connections:
            return Disconnect(DisconnectCode.CONNECTION_LIMIT), "max_connections"
        if user and self._user_limit_hit(user):
            return Disconnect(DisconnectCode.CONNECTION_LIMIT), "max_connections_per_user"
        if client_ip is not None:
            try:
                self._ip_limits.admit(client_ip)
            except Disconnect as exc:
                why = (
                    "connect_rate_per_ip" if exc.code == DisconnectCode.TOO_MANY_REQUESTS else "max_connections_per_ip"
                )
                return exc, why
        return None

    def client_ip(self, session: Session) -> str | None:
        """The peer IP ``session`` connected from, when the endpoint knew it."""
        return self._session_ips.get(session.id)

    async def serve(self, session: Session, handler: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``session`` until it ends and the hub has removed it from every channel."""
        await session.run(handler)

    def set_user(self, session: Session, user: str, conn_info: RawJSON | None = None) -> None:
        """Record who ``session`` is once it authenticated (before it subscribes). Raises
        :class:`Disconnect` 3504 when ``user`` has ``max_connections_per_user`` already."""
        if user and self._user_limit_hit(user, session):
            if not session.authenticated:
                session.user = user  # named in the refusal line when the session ends
            raise Disconnect(DisconnectCode.CONNECTION_LIMIT)
        first = not session.authenticated
        self._forget_user(session)
        session.user, session.conn_info = user, conn_info
        session.authenticated = True
        self._users.setdefault(user, set()).add(session)
        if first:
            connlog.connected(session)

    def _user_limit_hit(self, user: str, session: Session | None = None) -> bool:
        sessions = self._users.get(user, ())
        return session not in sessions and len(sessions) >= self.settings.max_connections_per_user

    def _forget_user(self, session: Session) -> None:
        sessions = self._users.get(session.user) if session.authenticated else None
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del self._users[session.user]

    async def _detach(self, session: Session) -> None:
        session.close(DisconnectCode.FORCE_DISCONNECT)
        for channel in list(session.subscriptions):
            try:
                await self.unsubscribe(session, channel)
            except Exception:  # the broker failed; the session is gone from this hub all the same
                log.exception("removing session %s from %s failed", session.id, channel)
        self._sessions.pop(session.id, None)
        ip = self._session_ips.pop(session.id, None)
        connlog.closed(session, ip)
        if ip is not None:
            self._ip_limits.release(ip)
        self._forget_user(session)
        for callback in self.on_session_closed:
            try:
                await callback(session)
            except Exception:
                log.exception("on_session_closed callback failed")
        if not self._sessions:
            self._no_sessions.set()

    def sessions_of(self, user: str) -> list[Session]:
        """The sessions of ``user`` on this hub."""
        return list(self._users.get(user, ()))

    # -- subscriptions ----------------------------------------------------------------

    def channel(self, name: str) -> Channel:
        """Validate ``name`` (raises :class:`ReplyError` 107/102) and return what it implies."""
        return parse_channel(name, self.settings)

    async def subscribe(
        self,
        session: Session,
        name: str,
        *,
        join_leave: bool = False,
        positioned: bool = False,
        chan_info: RawJSON | None = None,
        delta: bool = False,
    ) -> Channel:
        """Subscribe ``session`` to channel ``name``.

        Publications are buffered in the session until :meth:`Session.finish_subscribe`, so
        that the caller can send its subscribe reply first. Raises :class:`ReplyError`
        105 (already subscribed), 106 (channel limit, or ``presence_max_clients`` present
        already), 107/102 (bad or unknown channel).
        """
        channel = self.channel(name)
        if name in session.subscriptions:
            raise ReplyError(ErrorCode.ALREADY_SUBSCRIBED)
        if len(session.subscriptions) >= self.settings.client_channel_limit:
            raise ReplyError(ErrorCode.LIMIT_EXCEEDED)
        sub = session.subscriptions[name] = Subscription(
            join_leave=join_leave and channel.options.join_leave,
            positioned=positioned,
            chan_info=chan_info,
            delta=delta,
        )
        state = self._channels.get(name)
        if state is None:
            state = self._channels[name] = _ChannelState()
        state.subscribers[session] = sub
        state.delta_subscribers += delta
        try:
            if not state.broker_subscribed:
                async with state.lock:
                    if not state.broker_subscribed and state.subscribers:
                        await self.broker.subscribe(name)
                        state.broker_subscribed = True
            info = session.info(chan_info)
            if channel.options.presence:
                if await self.broker.presence_count(name) >= self.settings.presence_max_clients:
                    raise ReplyError(ErrorCode.LIMIT_EXCEEDED, "presence limit exceeded")
                await self.broker.add_presence(name, info, self.settings.presence_ttl)
            if channel.options.join_leave:
                await self.broker.publish_join(name, info)
        except BaseException:
            await self.unsubscribe(session, name, announce=False)
            raise
        return channel

    async def unsubscribe(self, session: Session, name: str, *, announce: bool = True) -> None:
        """Remove ``session`` from channel ``name`` (no-op if it is not subscribed)."""
        sub = session.subscriptions.pop(name, None)
        if sub is not None:
            await self._remove_subscriber(session, name, sub, announce=announce)

    def _drop_subscriber(self, session: Session, name: str, sub: Subscription) -> _ChannelState | None:
        """Take ``sub`` (``session``'s subscription, already out of ``session.subscriptions``)
        out of the fan-out of channel ``name`` now; returns the channel's state, if any."""
        state = self._channels.get(name)
        if state is not None and state.subscribers.get(session) is sub:
            del state.subscribers[session]
            state.delta_subscribers -= sub.delta
        return state

    async def _remove_subscriber(self, session: Session, name: str, sub: Subscription, *, announce: bool) -> None:
        state = self._drop_subscriber(session, name, sub)
        if state is None:
            return
        try:
            if not state.subscribers:
                async with state.lock:
                    if not state.subscribers and state.broker_subscribed:
                        state.broker_subscribed = False
                        await self.broker.unsubscribe(name)
            options = parse_channel(name, self.settings).options
            if options.presence:
                await self.broker.remove_presence(name, session.id)
            if announce and options.join_leave:
                await self.broker.publish_leave(name, session.info(sub.chan_info))
        except BrokerError as exc:
            # The session has left this hub all the same; its presence entry expires by itself.
            log.warning("removing session %s from %s on the broker failed: %s", session.id, name, exc)
        finally:
            if not state.subscribers and self._channels.get(name) is state:
                del self._channels[name]

    def channels(self) -> list[str]:
        """Channels with at least one subscriber on this hub."""
        return list(self._channels)

    # -- server API -------------------------------------------------------------------

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        info: ClientInfo | None = None,
        tags: Mapping[str, str] | None = None,
        skip_history: bool = False,
        idempotency_key: str | None = None,
    ) -> StreamPosition:
        """Publish ``data`` (any JSON value; ``bytes`` are taken as JSON text) to ``channel``.

        Safe to call from route handlers, background tasks and any coroutine on the hub's loop.
        Returns the publication's position (offset 0 and epoch ``""`` without history).
        ``skip_history``: deliver only, keep nothing (offset 0). ``idempotency_key``: a publish
        repeating the key for ``channel`` within ``idempotency_window`` is not delivered again
        and returns the first one's position. Raises :class:`HubNotRunning` before the hub
        started or after it closed.
        """
        self._require_running()
        ch = self.channel(channel)
        if idempotency_key:
            return await self._published_once.run(
                (channel, idempotency_key),
                lambda: self.publish(channel, data, info=info, tags=tags, skip_history=skip_history),
            )
        pub = Publication(data=to_raw(data), info=info, tags=tags, time=int(time.time() * 1000))
        opts = ch.options
        position = await self.broker.publish(
            channel,
            pub,
            PublishOptions(0 if skip_history else opts.history_size, opts.history_ttl, self.settings.history_meta_ttl),
        )
        await self._yield_if_busy()
        return position

    async def _yield_if_busy(self) -> None:
        """Let the writers run when publishing has held the loop for ``publish_slice`` seconds.

        Fan-out never awaits (with the memory broker, neither does publish), so a burst of
        publishes would keep every writer from sending until it ends. Yielding after each
        publish would defeat batching; yielding once per slice keeps both.
        """
        loop = asyncio.get_running_loop()
        if loop.time() - self._slice_started >= self.settings.publish_slice:
            await asyncio.sleep(0)
            self._slice_started = loop.time()

    async def broadcast(self, data: Any) -> None:
        """Send ``data`` to every connection of every hub on the broker, subscribed or not
        (a ``message`` push for protocol clients, the payload itself for raw ones)."""
        await self._control({"op": "message", "data": orjson.Fragment(to_raw(data))})

    async def history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None, reverse: bool = False
    ) -> ChannelHistory:
        """Publications kept for ``channel`` (their ``data`` decoded) and its current position.

        ``since`` returns only what came after that position; raises :class:`ReplyError` 112
        when its epoch is not the stream's, :class:`FeatureNotEnabled` when the namespace keeps
        no history. The result is a dataclass a route can return as it is.
        """
        self._feature(channel, "history")
        result = await self.read_history(channel, since=since, limit=limit, reverse=reverse)
        return ChannelHistory(
            publications=[HistoryPublication.of(pub) for pub in result.publications], position=result.position
        )

    async def read_history(
        self, channel: str, *, since: StreamPosition | None = None, limit: int | None = None, reverse: bool = False
    ) -> HistoryResult:
        """:meth:`history` as the broker keeps it (raw JSON payloads), for the protocol path:
        :class:`ReplyError` 108 when the namespace keeps no history."""
        ch = self.channel(channel)
        if not ch.options.history:
            raise ReplyError(ErrorCode.NOT_AVAILABLE)
        result = await stream_history(self.broker, channel, since, limit, reverse, self.settings.history_empty_ttl)
        if since is not None and since.epoch and since.epoch != result.position.epoch:
            raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
        return result

    async def remove_history(self, channel: str) -> None:
        """Drop the publications kept for ``channel``. Its offset and epoch stay, so clients
        that missed any of them are told they cannot recover (``recovered: false``)."""
        self._feature(channel, "history")
        await self.broker.remove_history(channel)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """Clients present in ``channel``: client id -> info. :class:`FeatureNotEnabled` if
        presence is off."""
        self._feature(channel, "presence")
        return await self.broker.presence(channel)

    async def presence_stats(self, channel: str) -> tuple[int, int]:
        """``(clients, distinct users)`` present in ``channel``. :class:`FeatureNotEnabled` if
        presence is off."""
        self._feature(channel, "presence")
        return await self.broker.presence_stats(channel)

    def _feature(self, channel: str, feature: str) -> None:
        """The running hub's ``channel``, if its namespace has ``feature`` (history or presence)."""
        self._require_running()
        ch = self.channel(channel)
        if feature == "history" and not ch.options.history:
            raise FeatureNotEnabled(
                f"channel {channel!r} keeps no history: set ChannelOptions(history_size=N) with N > 0"
                f" for its namespace {ch.namespace!r} in HubSettings.namespaces"
            )
        if feature == "presence" and not ch.options.presence:
            raise FeatureNotEnabled(
                f"channel {channel!r} has no presence: set ChannelOptions(presence=True)"
                f" for its namespace {ch.namespace!r} in HubSettings.namespaces"
            )

    async def unsubscribe_user(self, user: str, channel: str, *, client: str | None = None) -> None:
        """Unsubscribe every connection of ``user`` (only connection ``client`` if given), on
        every hub, from ``channel``."""
        self.channel(channel)
        await self._control({"op": "unsubscribe", "user": user, "channel": channel, "client": client})

    async def subscribe_user(self, user: str, channel: str, *, client: str | None = None) -> None:
        """Subscribe every connection of ``user`` (only connection ``client`` if given), on
        every hub, to ``channel`` (a server-side subscription: protocol clients get a
        ``subscribe`` push).

        It returns once every hub was told, before the subscriptions exist: a publication
        made right after it may reach a connection before it is subscribed, or not at all.
        """
        self.channel(channel)
        await self._control({"op": "subscribe", "user": user, "channel": channel, "client": client})

    def server_subscribe(self, session: Session, channel: str) -> None:
        """Subscribe ``session`` to ``channel`` on the server's initiative (never awaits)."""
        if channel in session.subscriptions or session.closed:
            return
        if session.on_server_subscribe is not None:
            session.on_server_subscribe(channel)
        else:
            session.start_task(self._join(session, channel))

    async def _join(self, session: Session, channel: str) -> None:
        await self.subscribe(session, channel)
        self.finish_subscribe(session, channel)

    def finish_subscribe(self, session: Session, channel: str, after_offset: int = 0) -> None:
        """End a subscribe of ``session`` once its reply is queued: queue the publications that
        came meanwhile (see :meth:`Session.finish_subscribe`), then its own join event, if it
        asked for join/leave (as Centrifugo, a client sees its own join, after its reply)."""
        session.finish_subscribe(channel, after_offset)
        sub = session.subscriptions.get(channel)
        if sub is not None and sub.join_leave:
            session.deliver_join(channel, session.info(sub.chan_info))

    async def disconnect(
        self,
        user: str,
        code: int = DisconnectCode.FORCE_DISCONNECT,
        reason: str | None = None,
        *,
        client: str | None = None,
        whitelist: Collection[str] = (),
    ) -> None:
        """Disconnect every connection of ``user`` (only connection ``client`` if given, none
        whose id is in ``whitelist``), on every hub."""
        await self._control(
            {
                "op": "disconnect",
                "user": user,
                "code": int(code),
                "reason": reason,
                "client": client,
                "whitelist": list(whitelist),
            }
        )

    # -- broker events ----------------------------------------------------------------

    def on_publication(self, channel: str, pub: Publication) -> None:
        state = self._channels.get(channel)
        if state is not None:
            if state.delta_subscribers:  # deltas are made against the previous publication
                base, limit = state.last_data, self.settings.delta_max_bytes
                if base is not None and len(base) <= limit and len(pub.data) <= limit:
                    pub = dataclasses.replace(pub, delta_base=base)
                state.last_data = pub.data
            # A copy: a delivery can take its own session out (a gap in a positioned channel).
            for session, sub in state.subscribers.copy().items():
                session.deliver(channel, sub, pub)

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self._deliver_join(channel, info, leave=False)

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self._deliver_join(channel, info, leave=True)

    def _deliver_join(self, channel: str, info: ClientInfo, *, leave: bool) -> None:
        state = self._channels.get(channel)
        if state is not None:
            for session in state.subscribers:
                if session.id != info.client:  # the joiner's own join comes from finish_subscribe
                    session.deliver_join(channel, info, leave=leave)

    def on_control(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            op = msg["op"]
            if op == "message":
                raw = orjson.dumps(msg["data"])
                for session in self._sessions.values():
                    if session.authenticated:
                        session.enqueue(session.codec.message(raw))
            elif op == "disconnect":
                for session in self._targets(msg):
                    session.close(msg["code"], msg["reason"])
            elif op == "unsubscribe":
                for session in self._targets(msg):
                    self.server_unsubscribe(session, msg["channel"])
            elif op == "subscribe":
                for session in self._targets(msg):
                    self.server_subscribe(session, msg["channel"])
            elif op == "refresh":
                self._refresh_sessions(self._targets(msg), msg["expired"], msg["expire_at"])
            elif op == "emulation":
                self._emulated_from_broker(msg)
        except (KeyError, TypeError, ValueError):
            log.warning("ignored malformed control message %r", data[:200])

    def _emulated_from_broker(self, msg: Mapping[str, Any]) -> None:
        if msg["node"] == self.node_id and not self._deliver_emulated(str(msg["session"]), str(msg["data"])):
            log.warning(
                "dropped an emulation request routed here: its session has emulation_queue_max_requests waiting"
            )

    def server_unsubscribe(
        self, session: Session, channel: str, code: UnsubscribeCode = UnsubscribeCode.SERVER
    ) -> None:
        """Unsubscribe ``session`` from ``channel`` now and tell the client (never awaits)."""
        if session.closed:
            return  # its detach takes it out of every channel it is in
        sub = session.subscriptions.pop(channel, None)
        if sub is None:
            return
        self._drop_subscriber(session, channel, sub)  # no publication after the unsubscribe push
        frame = session.codec.unsubscribe(channel, int(code), code.reason)
        if frame is not None:
            session.enqueue(frame)
        session.start_task(self._remove_subscriber(session, channel, sub, announce=True))

    def on_broker_state(self, up: bool) -> None:
        """The broker lost (``False``) or regained (``True``) its backend connection.

        Publications may have been lost in between: on ``True`` the hub checks the position of
        every positioned subscription at once (see :meth:`check_positions`) and re-adds its
        presence entries, in the background.
        """
        self._broker_up = up
        for callback in list(self.on_broker_state_changed):
            try:
                callback(up)
            except Exception:
                log.exception("on_broker_state_changed callback failed")
        if up and self._started and not self._closing:
            if self._resync_task is not None:
                self._resync_task.cancel()
            self._resync_task = asyncio.create_task(self._resync(), name="hub-resync")

    @property
    def broker_healthy(self) -> bool:
        """Whether the broker is connected to its backend, for readiness probes. While it is
        not, publishing raises :class:`BrokerUnavailable` and clients that publish get error 100."""
        return self._broker_up and self.broker.healthy

    # -- bidirectional emulation ------------------------------------------------------

    def register_emulated(self, key: str, inbox: Callable[[str], bool]) -> None:
        """Route emulation requests for the session ``key`` (a secret the client got in its
        connect reply) to ``inbox``, which takes the commands' text and returns False when it
        is full. Remove with :meth:`unregister_emulated`."""
        self._emulated[key] = inbox

    def unregister_emulated(self, key: str) -> None:
        self._emulated.pop(key, None)

    def _deliver_emulated(self, key: str, data: str) -> bool:
        inbox = self._emulated.get(key)
        return True if inbox is None else inbox(data)  # a session gone: its stream has ended

    async def emulate(self, node: str, key: str, data: str) -> bool:
        """Hand the commands ``data`` of an emulation request to session ``key`` on ``node``:
        here if ``node`` is this hub, else through the broker to the hub whose ``node_id`` it
        is. Returns False when the session is here and its inbox is full."""
        if node == self.node_id:
            return self._deliver_emulated(key, data)
        await self._control({"op": "emulation", "node": node, "session": key, "data": data})
        return True

    async def _control(self, msg: dict[str, Any]) -> None:
        self._require_running()
        await self.broker.publish_control(orjson.dumps(msg))

    # -- position sync ----------------------------------------------------------------

    async def _check_positions_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.position_check_interval)
            if self._broker_up:  # while it is down, the reconnect triggers a check
                await self.check_positions()

    async def _resync(self) -> None:
        await self.check_positions()
        try:
            await self.refresh_presence()
        except BrokerError as exc:
            self._outages.failed("presence refresh", exc)

    def _subscribers(self, channel: str) -> Mapping[Session, Subscription]:
        state = self._channels.get(channel)
        return state.subscribers if state is not None else {}

    async def check_positions(self) -> int:
        """Find positioned subscriptions that missed publications and make them recover.

        Reads the stream top of every channel with positioned subscribers here, then waits
        ``position_check_grace`` for publications that were already on their way. A
        subscription still below that top, or in another epoch (the stream was lost), missed
        publications that no later publication may ever reveal: it recovers (protocol clients
        get unsubscribe 2500 and resubscribe with recovery). Run every
        ``position_check_interval`` and after each broker reconnect (see :mod:`.positions`).
        Returns how many subscriptions were made to recover.
        """
        return await self._positions.check(list(self._channels))

    async def _stream_top(self, channel: str) -> StreamPosition:
        result = await stream_history(self.broker, channel, None, 0, False, self.settings.history_empty_ttl)
        return result.position

    # -- presence upkeep --------------------------------------------------------------

    async def _refresh_presence_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.presence_refresh_interval)
            try:
                await self.refresh_presence()
            except BrokerError as exc:
                self._outages.failed("presence refresh", exc)
            except Exception:
                log.exception("presence refresh failed; retrying in %ss", self.settings.presence_refresh_interval)
            else:
                self._outages.succeeded()

    async def refresh_presence(self) -> None:
        """Re-add the presence entries of this hub's sessions so they do not expire."""
        for name, state in list(self._channels.items()):
            if not parse_channel(name, self.settings).options.presence:
                continue
            for session, sub in list(state.subscribers.items()):
                if state.subscribers.get(session) is sub:  # not gone during the awaits before
                    await self.broker.add_presence(name, session.info(sub.chan_info), self.settings.presence_ttl)

    # -- introspection ----------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """Counts for leak checks and metrics."""
        return {
            "sessions": len(self._sessions),
            "users": len(self._users),
            "channels": len(self._channels),
            "subscriptions": sum(len(s.subscribers) for s in self._channels.values()),
        }

    # -- server API: targets, refresh, info, channel counts -------------------------------

    def _targets(self, msg: Mapping[str, Any]) -> list[Session]:
        """Sessions of ``msg["user"]``, only ``msg["client"]`` if set, none in ``msg["whitelist"]``."""
        client, keep = msg.get("client"), set(msg.get("whitelist") or ())
        return [s for s in self.sessions_of(msg["user"]) if (not client or s.id == client) and s.id not in keep]

    async def refresh_user(
        self, user: str, *, client: str | None = None, expired: bool = False, expire_at: int = 0
    ) -> None:
        """Refresh the connections of ``user`` (only connection ``client`` if given), on every hub.

        ``expired``: close them now with 3005. Otherwise ``expire_at`` (Unix seconds; 0: never)
        becomes their new expiry, as if the client had refreshed its token. Only protocol
        connections (SDK clients) take a new expiry; tutorial connections ignore it.
        """
        await self._control(
            {"op": "refresh", "user": user, "client": client, "expired": expired, "expire_at": int(expire_at)}
        )

    def _refresh_sessions(self, sessions: list[Session], expired: bool, expire_at: int) -> None:
        for session in sessions:
            if expired:
                session.close(DisconnectCode.EXPIRED)
            elif session.on_server_refresh is not None:
                session.on_server_refresh(expire_at)

    def channel_counts(self, pattern: str | None = None) -> dict[str, int]:
        """Channels with subscribers on this hub -> their number of subscribers here.

        ``pattern`` keeps the names it matches (shell-style: ``*``, ``?``, ``[...]``).
        """
        return {
            name: len(state.subscribers)
            for name, state in self._channels.items()
            if state.subscribers and (not pattern or fnmatch.fnmatchcase(name, pattern))
        }

    def info(self) -> NodeInfo:
        """Who this hub is and what it holds (the server API's ``info``)."""
        stats = self.stats
        return NodeInfo(
            uid=self.node_id,
            name=f"{socket.gethostname()}_{os.getpid()}",
            version=__version__,
            num_clients=stats["sessions"],
            num_users=stats["users"],
            num_channels=stats["channels"],
            num_subs=stats["subscriptions"],
            uptime=int(time.monotonic() - self._started_at),
        )


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One hub as the server API's ``info`` reports it."""

    uid: str
    name: str
    version: str
    num_clients: int
    num_users: int
    num_channels: int
    num_subs: int
    uptime: int
    """Seconds since the hub started."""
