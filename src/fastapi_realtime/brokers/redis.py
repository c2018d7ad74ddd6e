"""The Redis broker: hubs in many processes and on many servers share one Redis (or a Redis Cluster).

``RedisBroker("redis://:password@host:6379/0")`` on ``redis.asyncio`` (install the ``redis``
extra). One Pub/Sub connection per process and Redis node (not per channel or client) receives
every channel this hub has subscribers in; commands go over a connection pool.

- **Publications with history** are one Lua script per channel: assign the next offset, append
  to the stream, trim it to ``history_size``, refresh the TTLs and PUBLISH, atomically, so every
  node sees gap-free offsets in order. The epoch lives in Redis: a lost stream (restart without
  persistence, flush, expiry) starts again at offset 1 under a new epoch.
- **Presence** is a ZSET of expiry times and a HASH of client info per channel, pruned by the
  scripts, so the entries of a dead node vanish within their TTL.
- **Join/leave** travel on the channel's Pub/Sub channel (in order with its publications);
  **control messages** on one control channel every broker subscribes to.
- **Redis Cluster** (``cluster=True``): a channel's keys share a hash tag, so one slot holds them
  and one script touches them; fan-out is sharded Pub/Sub (SPUBLISH/SSUBSCRIBE, Redis 7+) over
  one Pub/Sub connection per primary that has subscribed channels, routed by slot. A slot that
  moves (resharding, failover) makes the broker refresh the topology and resubscribe.
- **Faults**: every call that needs Redis raises :class:`BrokerUnavailable` within ``timeout``
  seconds when Redis does not answer; it never hangs and never succeeds silently. A broken or
  stalled Pub/Sub connection is re-established with exponential backoff and jitter and every
  channel resubscribed; the hub is told through ``on_broker_state`` (False, then True) because
  what was published meanwhile was not received. Each fault logs one line without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import RedisError

from ..protocol.messages import ClientInfo, Publication, StreamPosition
from . import redis_scripts as scripts
from .base import (
    Broker,
    BrokerError,
    BrokerEvents,
    BrokerUnavailable,
    HistoryResult,
    PublishOptions,
    StreamLimitExceeded,
)
from .redis_pubsub import LinkLost, LinkOptions, PubSubLink
from .redis_wire import JOIN, LEAVE, ChannelKeys, decode_info, decode_message, decode_publication, encode_info
from .redis_wire import encode_publication as encode_pub

log = logging.getLogger("fastapi_realtime.brokers.redis")

T = TypeVar("T")


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBroker(Broker):
    """A :class:`Broker` on Redis or a Redis Cluster. See the module docstring.

    Options (seconds unless said otherwise):

    - ``cluster`` (``False``): ``url`` names one node of a Redis Cluster; the others are discovered.
    - ``sharded_pubsub`` (``None``: when the cluster runs Redis 7+): on a cluster, fan out with
      SPUBLISH/SSUBSCRIBE (each message goes to one shard) rather than classic PUBLISH (which the
      cluster bus copies to every node; one Pub/Sub connection to any node then receives all).
    - ``prefix`` (``"fastapi_realtime"``): prepended to every key and Pub/Sub channel, so that
      several applications can share one Redis.
    - ``timeout`` (``5.0``): how long a call waits for Redis before it raises
      :class:`BrokerUnavailable`; also the connect timeout and how long a resubscription may take.
    - ``ping_interval`` (``10.0``): an idle Pub/Sub connection is PINGed after this long and
      reconnected when the PONG does not come within another ``ping_interval``.
    - ``backoff_min`` / ``backoff_max`` (``0.05`` / ``5.0``): bounds of the reconnect delay, which
      doubles per failed attempt, with full jitter.
    - ``subscribe_batch`` (``512`` channels): most channels sent in one (S)SUBSCRIBE.
    - ``max_connections`` (``50``): most calls to Redis in flight at once (the size of the command
      connection pool; per node on a cluster). A call beyond it waits for a free connection, within
      its ``timeout``, and only then raises :class:`BrokerUnavailable`.
    - ``max_empty_streams`` (``100_000``): most positions of never-published channels this node
      creates that are still alive (see :meth:`Broker.history`); beyond it, reading the position of
      one more raises :class:`StreamLimitExceeded`.
    - ``clock``: ``None`` uses the Redis server's clock for every expiry (all nodes agree); tests
      pass a fake clock (seconds) to make time pass.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        cluster: bool = False,
        sharded_pubsub: bool | None = None,
        prefix: str = "fastapi_realtime",
        timeout: float = 5.0,
        ping_interval: float = 10.0,
        backoff_min: float = 0.05,
        backoff_max: float = 5.0,
        subscribe_batch: int = 512,
        max_connections: int = 50,
        max_empty_streams: int = 100_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if timeout <= 0 or ping_interval <= 0 or not 0 < backoff_min <= backoff_max or subscribe_batch < 1:
            raise ValueError("timeout, ping_interval, backoff_min <= backoff_max and subscribe_batch must be > 0")
        if max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        self.url = url
        self.cluster = cluster
        self._sharded = sharded_pubsub if cluster else False
        self.prefix = prefix
        self.timeout = timeout
        self._link_options = LinkOptions(timeout, ping_interval, backoff_min, backoff_max, subscribe_batch)
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        """One per pooled connection: a call waits here (within ``timeout``) rather than failing."""
        self._clock = clock
        self._id = uuid.uuid4().hex
        self._control = f"{prefix}:control".encode() if not cluster else f"{prefix}:control:{{control}}".encode()
        self._events: BrokerEvents | None = None
        self._client: Any = None
        self._links: dict[str, PubSubLink] = {}
        self._routes: dict[bytes, PubSubLink] = {}
        self._channels: dict[bytes, str] = {}
        self._syncs: dict[str, asyncio.Future[None]] = {}
        self._sync_channels: dict[str, bytes] = {}
        self._healthy = False
        self._started = False
        self._scripts: dict[str, Any] = {}
        self._rerouting: asyncio.Task[None] | None = None
        self._max_empty_streams = max_empty_streams
        self._empty: dict[str, float] = {}
        """Placeholders this node created: channel -> when they expire (local clock)."""
        self._last_empty_sweep = -1.0

    # -- lifetime ---------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """``True`` while every Pub/Sub connection is up and subscribed."""
        return self._healthy

    async def start(self, events: BrokerEvents) -> None:
        """Connect; raises :class:`BrokerUnavailable` (naming the URL, password redacted) when
        Redis cannot be reached within ``timeout``."""
        try:
            self._client = self._make_client()
            await asyncio.wait_for(self._initialize(), self.timeout)
            self._events = events
            await self._call(self._ensure_link(self._control).subscribe(self._control), pooled=False)
        except (TimeoutError, BrokerError, RedisError, OSError) as exc:
            await self.close()
            raise BrokerUnavailable(
                f"cannot reach Redis at {redact(self.url)} within {self.timeout}s ({str(exc) or type(exc).__name__}): "
                "check that Redis is running and reachable from this host, the host, port, password and "
                "database in the URL" + (", and that it is a cluster node" if self.cluster else "")
            ) from None
        self._set_health()
        self._started = True

    def _make_client(self) -> Any:
        # A few quick retries ride over stale pooled connections (after a Redis restart) and
        # failovers; the publish script is idempotent (its publish id), so a retry never
        # publishes twice. The whole call stays bounded by ``timeout``. Calls never take more than
        # ``max_connections`` at once (``_slots``); a cluster keeps one spare per node for its own
        # topology refreshes.
        options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "max_connections": self._max_connections + (1 if self.cluster else 0),
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.02), 3),
        }
        if self.cluster:
            return RedisCluster.from_url(self.url, **options)
        return aioredis.Redis.from_url(self.url, **options)

    async def _initialize(self) -> None:
        if self.cluster:
            await self._client.initialize()
            if self._sharded is None:
                info = await self._client.info("server", target_nodes=RedisCluster.RANDOM)
                self._sharded = int(str(info["redis_version"]).split(".")[0]) >= 7
        else:
            await self._client.ping()
            self._sharded = False
        for name in ("PUBLISH", "HISTORY", "ADD_PRESENCE", "REMOVE_PRESENCE", "PRESENCE"):
            self._scripts[name] = self._client.register_script(getattr(scripts, name))

    async def close(self) -> None:
        self._events = None
        if self._rerouting is not None:
            self._rerouting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rerouting
            self._rerouting = None
        links, self._links = self._links, {}
        self._routes.clear()
        for link in links.values():
            await link.close()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()
        self._healthy = self._started = False

    # -- Pub/Sub links ----------------------------------------------------------------

    def _node_of(self, channel: bytes) -> tuple[str, str]:
        """``(name, url)`` of the node whose Pub/Sub connection carries ``channel``."""
        if not self.cluster:
            return redact(self.url), self.url
        # Sharded: the slot's primary. Classic Pub/Sub on a cluster reaches every node: any one will do.
        node = self._client.get_node_from_key(channel) if self._sharded else self._client.get_default_node()
        parts = urlsplit(self.url)
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return f"{node.host}:{node.port}", urlunsplit(parts._replace(netloc=f"{netloc}{node.host}:{node.port}"))

    def _ensure_link(self, channel: bytes) -> PubSubLink:
        link = self._routes.get(channel)
        if link is not None:
            return link
        name, url = self._node_of(channel)
        link = self._links.get(name)
        if link is None:
            client = aioredis.Redis.from_url(
                url,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                max_connections=2,
                protocol=2,
            )
            link = PubSubLink(
                name,
                client,
                sharded=bool(self._sharded),
                options=self._link_options,
                on_message=self._on_message,
                on_state=self._on_link_state,
                on_lost=self._on_link_lost,
            )
            self._links[name] = link
            link.start()
        self._routes[channel] = link
        return link

    def _on_link_state(self, link: PubSubLink) -> None:
        self._set_health()

    def _set_health(self) -> None:
        healthy = self._client is not None and bool(self._links) and all(link.up for link in self._links.values())
        if healthy != self._healthy:
            self._healthy = healthy
            if self._events is not None and self._started:
                self._events.on_broker_state(healthy)

    def _on_link_lost(self, link: PubSubLink, exc: BaseException) -> None:
        if self.cluster and (self._rerouting is None or self._rerouting.done()):
            self._rerouting = asyncio.create_task(self._reroute(), name="redis-broker-reroute")

    async def _reroute(self) -> None:
        """Refresh the cluster topology and move channels whose slot changed node."""
        try:
            await asyncio.wait_for(self._client.nodes_manager.initialize(), self.timeout)
        except (TimeoutError, RedisError, OSError) as exc:
            log.warning("redis broker: cluster topology refresh failed (%s); retrying on the next failure", exc)
            return
        sync_channels = set(self._sync_channels.values())
        for channel, link in list(self._routes.items()):
            name, _ = self._node_of(channel)
            if name != link.name:
                link.unsubscribe(channel)
                del self._routes[channel]
                if channel in sync_channels:  # found again for its node when next needed
                    del self._sync_channels[link.name]
                    continue
                self._ensure_link(channel).want(channel)
        for name, link in list(self._links.items()):
            if not link.channels:
                del self._links[name]
                await link.close()
        self._set_health()

    def _on_message(self, channel: bytes, data: bytes) -> None:
        events = self._events
        if events is None:
            return
        if channel == self._control:
            try:
                events.on_control(data)
            except Exception:
                log.exception("redis broker: control handler failed")
            return
        name = self._channels.get(channel)
        if name is None:
            if data.startswith(b"s") and channel in self._sync_channels.values():
                future = self._syncs.get(data[1:].decode())
                if future is not None and not future.done():
                    future.set_result(None)
            return
        try:
            kind, value = decode_message(data)
        except (ValueError, KeyError, IndexError):
            log.warning("redis broker: ignored a malformed message on %s", name)
            return
        try:
            if isinstance(value, Publication):
                events.on_publication(name, value)
            elif kind == JOIN:
                events.on_join(name, value)
            elif kind == LEAVE:
                events.on_leave(name, value)
        except Exception:  # the handler's bug must not stop the listener of every channel
            log.exception("redis broker: event handler failed on %s", name)

    async def flush(self) -> None:
        """Wait until everything published (by anyone) before this call, on the channels this
        broker is subscribed to, was delivered to its events. For tests and orderly hand-overs."""
        tokens: list[str] = []
        try:
            for link in list(self._links.values()):
                channel = self._sync_channel(link)
                await self._call(link.subscribe(channel), pooled=False)
                token = secrets.token_hex(8)
                self._syncs[token] = asyncio.get_running_loop().create_future()
                tokens.append(token)
                await self._call(self._fanout(channel, b"s" + token.encode()))
            await self._call(asyncio.gather(*(self._syncs[t] for t in tokens if t in self._syncs)), pooled=False)
        finally:
            for token in tokens:
                self._syncs.pop(token, None)

    def _sync_channel(self, link: PubSubLink) -> bytes:
        """A channel of this broker that ``link``'s node carries (found once per node)."""
        channel = self._sync_channels.get(link.name)
        if channel is None:
            for i in range(100_000):
                candidate = f"{self.prefix}:sync:{{{i}}}:{self._id}".encode()
                if self._node_of(candidate)[0] == link.name:
                    channel = candidate
                    break
            else:  # pragma: no cover - a node without slots carries nothing to wait for
                raise BrokerError(f"no slot of {link.name} found")
            self._sync_channels[link.name] = channel
            self._routes[channel] = link
        return channel

    # -- calls to Redis -----------------------------------------------------------------

    async def _call(self, awaitable: Awaitable[T], *, pooled: bool = True) -> T:
        """Await a call to Redis; :class:`BrokerUnavailable` when it fails or takes longer than ``timeout``.

        ``pooled`` calls use a command connection: beyond ``max_connections`` of them at once, a call
        waits for one to be free (the wait counts against ``timeout``); redis-py's pools would raise
        at once instead (and the cluster client has no waiting pool)."""
        if self._client is None:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise BrokerUnavailable(f"Redis broker for {redact(self.url)} is not started")
        try:
            async with asyncio.timeout(self.timeout):
                if not pooled:
                    return await awaitable
                try:
                    await self._slots.acquire()
                except BaseException:
                    if asyncio.iscoroutine(awaitable):
                        awaitable.close()
                    raise
                try:
                    return await awaitable
                finally:
                    self._slots.release()
        except TimeoutError as exc:
            raise BrokerUnavailable(f"Redis at {redact(self.url)} did not answer within {self.timeout}s") from exc
        except (RedisError, OSError, LinkLost) as exc:
            if isinstance(exc, RedisError) and type(exc).__name__ == "ResponseError":
                raise BrokerError(f"Redis at {redact(self.url)} refused a command: {exc}") from exc
            raise BrokerUnavailable(f"Redis at {redact(self.url)} unavailable: {exc}") from exc

    def _local_now(self) -> float:
        return time.monotonic() if self._clock is None else self._clock()

    def _may_create_placeholder(self) -> bool:
        """Whether this node may create one more never-published channel's position."""
        if len(self._empty) < self._max_empty_streams:
            return True
        now = self._local_now()
        if now - self._last_empty_sweep >= 1.0:  # at most one full sweep a second, even under a flood
            self._last_empty_sweep = now
            self._empty = {ch: expires for ch, expires in self._empty.items() if expires > now}
        return len(self._empty) < self._max_empty_streams

    def _now(self) -> int:
        return 0 if self._clock is None else int(self._clock() * 1000)

    async def _fanout(self, channel: bytes, message: bytes) -> None:
        command = "SPUBLISH" if self._sharded else "PUBLISH"
        if self._sharded:
            node = self._client.get_node_from_key(channel)
            await self._client.execute_command(command, channel, message, target_nodes=node)
        else:
            await self._client.execute_command(command, channel, message)

    # -- the Broker interface -----------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        keys = ChannelKeys.of(self.prefix, channel)
        pubsub = keys.pubsub.encode()
        self._channels[pubsub] = channel
        try:
            await self._call(self._ensure_link(pubsub).subscribe(pubsub), pooled=False)
        except BaseException:
            self._forget(pubsub)
            raise

    async def unsubscribe(self, channel: str) -> None:
        self._forget(ChannelKeys.of(self.prefix, channel).pubsub.encode())

    def _forget(self, pubsub: bytes) -> None:
        self._channels.pop(pubsub, None)
        link = self._routes.pop(pubsub, None)
        if link is not None:
            link.unsubscribe(pubsub)

    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> StreamPosition:
        keys = ChannelKeys.of(self.prefix, channel)
        body = encode_pub(pub)
        self._empty.pop(channel, None)
        if opts.history_size <= 0:
            await self._call(self._fanout(keys.pubsub.encode(), b"p0:" + body))
            return StreamPosition(0, "")
        top, epoch = await self._call(
            self._scripts["PUBLISH"](
                keys=[keys.meta, keys.stream, keys.pubsub, keys.recent],
                args=[
                    self._now(),
                    secrets.token_urlsafe(6),
                    body,
                    opts.history_size,
                    _ms(opts.history_ttl),
                    _ms(opts.meta_ttl),
                    "spublish" if self._sharded else "publish",
                    secrets.token_urlsafe(9),
                ],
            )
        )
        return StreamPosition(int(top), _str(epoch))

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._call(self._fanout(ChannelKeys.of(self.prefix, channel).pubsub.encode(), b"j" + encode_info(info)))

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._call(self._fanout(ChannelKeys.of(self.prefix, channel).pubsub.encode(), b"l" + encode_info(info)))

    async def publish_control(self, data: bytes) -> None:
        await self._call(self._fanout(self._control, data))

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int | None, reverse: bool, meta_ttl: float
    ) -> HistoryResult:
        keys = ChannelKeys.of(self.prefix, channel)
        reply = await self._call(
            self._scripts["HISTORY"](
                keys=[keys.meta, keys.stream],
                args=[
                    self._now(),
                    secrets.token_urlsafe(6),
                    _ms(meta_ttl),
                    -1 if since is None else since.offset,
                    -1 if limit is None else limit,
                    1 if reverse else 0,
                    1 if self._may_create_placeholder() else 0,
                ],
            )
        )
        if int(reply[0]) < 0:
            raise StreamLimitExceeded(
                f"this node already created {self._max_empty_streams} positions of channels without publications"
            )
        top, epoch, entries, created = reply
        if created or (channel in self._empty and not int(top)):
            self._empty[channel] = max(self._empty.get(channel, 0.0), self._local_now() + meta_ttl)
        elif int(top):
            self._empty.pop(channel, None)
        pubs = [
            decode_publication(_field(fields, b"d"), int(_str(entry_id).split("-")[0])) for entry_id, fields in entries
        ]
        return HistoryResult(pubs, StreamPosition(int(top), _str(epoch)))

    async def remove_history(self, channel: str) -> None:
        await self._call(self._client.execute_command("DEL", ChannelKeys.of(self.prefix, channel).stream))

    async def add_presence(self, channel: str, info: ClientInfo, ttl: float) -> None:
        keys = ChannelKeys.of(self.prefix, channel)
        await self._call(
            self._scripts["ADD_PRESENCE"](
                keys=[keys.presence, keys.presence_info], args=[self._now(), _ms(ttl), info.client, encode_info(info)]
            )
        )

    async def remove_presence(self, channel: str, client_id: str) -> None:
        keys = ChannelKeys.of(self.prefix, channel)
        await self._call(self._scripts["REMOVE_PRESENCE"](keys=[keys.presence, keys.presence_info], args=[client_id]))

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        keys = ChannelKeys.of(self.prefix, channel)
        flat = await self._call(self._scripts["PRESENCE"](keys=[keys.presence, keys.presence_info], args=[self._now()]))
        return {_str(flat[i]): decode_info(flat[i + 1]) for i in range(0, len(flat), 2)}


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _field(fields: list[bytes] | dict[bytes, bytes], name: bytes) -> bytes:
    if isinstance(fields, dict):
        return fields[name]
    return fields[fields.index(name) + 1]
