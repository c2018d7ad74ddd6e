"""One Pub/Sub connection to one Redis node, kept alive: the receiving half of the Redis broker.

A :class:`PubSubLink` holds the set of channels it should be subscribed to and one task that
connects, subscribes them all (in batches), then reads messages. When the connection breaks or
stops answering PINGs, the task reports the link down, waits with exponential backoff and
jitter, connects again and resubscribes everything before it reports the link up again. Redis
Pub/Sub is at most once: whatever was published while the link was down is lost, which is why
the owner is told (and tells the hub, which checks stream positions).

Messages that arrived together are dispatched back to back within one loop turn (redis-py's read
returns a message it already buffered without waiting), so the hub sends a burst batched;
``tests/test_redis_load.py`` guards that against changes of redis-py.

Subscribing waits until Redis confirmed the subscription (so a publication made after
``subscribe`` returns is received); unsubscribing takes effect at once for the owner (it drops
messages of channels it no longer wants) and is sent to Redis in the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot
from redis.exceptions import RedisError

log = logging.getLogger("fastapi_realtime.brokers.redis")

_CONNECTION_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """Timing of a link (seconds); see :class:`~.redis.RedisBroker` for their meaning."""

    timeout: float
    ping_interval: float
    backoff_min: float
    backoff_max: float
    batch: int


class LinkLost(Exception):
    """The Pub/Sub connection broke, stalled or was told something it cannot continue after."""


class PubSubLink:
    """Subscriptions of one Redis node over one connection, re-established whenever it breaks.

    ``client`` makes the connection (its pool is used for this connection only). ``sharded``
    uses SSUBSCRIBE (Redis Cluster, 7.0+). ``on_message(channel, data)`` gets every message of a
    subscribed channel; ``on_state(link)`` is called whenever :attr:`up` changes.
    """

    def __init__(
        self,
        name: str,
        client: aioredis.Redis,
        *,
        sharded: bool,
        options: LinkOptions,
        on_message: Callable[[bytes, bytes], None],
        on_state: Callable[[PubSubLink], None],
        on_lost: Callable[[PubSubLink, BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self._client = client
        self._sharded = sharded
        self._sub, self._unsub = ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        self._confirm = self._sub.lower().encode()
        self._message = b"smessage" if sharded else b"message"
        self._options = options
        self._on_message = on_message
        self._on_state = on_state
        self._on_lost = on_lost
        self.channels: set[bytes] = set()
        """The channels this link should be subscribed to (confirmed or not)."""
        self.up = False
        self._confirmed: set[bytes] = set()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._outbox: list[tuple[bool, bytes]] = []
        self._pubsub: Any = None
        self._flush_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.failures = 0
        """Connection attempts that failed since the link was last up."""

    # -- lifetime ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"redis-pubsub {self.name}")
        self._task.add_done_callback(self._task_done)

    async def close(self) -> None:
        self._closing = True
        for task in (self._task, self._flush_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._flush_task = None
        await self._drop_connection()
        await self._client.aclose()
        self._fail_waiters(LinkLost(f"{self.name}: closed"))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """The listener ends only when closed; anything else is reported, never silent."""
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        log.error("redis broker: Pub/Sub listener of %s stopped: %r", self.name, exc)
        self._set_up(False)
        if self._on_lost is not None and exc is not None:
            self._on_lost(self, exc)

    # -- subscriptions ----------------------------------------------------------------

    async def subscribe(self, channel: bytes) -> None:
        """Subscribe and wait for Redis to confirm it (raises ``LinkLost``/``TimeoutError``)."""
        self.channels.add(channel)
        if channel in self._confirmed:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(future)
        if self.up:
            self._queue(True, channel)
        try:
            await asyncio.wait_for(asyncio.shield(future), self._options.timeout)
        except BaseException:
            waiters = self._waiters.get(channel, [])
            if future in waiters:
                waiters.remove(future)
            raise

    def want(self, channel: bytes) -> None:
        """Subscribe without waiting for the confirmation (it comes with the next batch or reconnect)."""
        if channel not in self.channels:
            self.channels.add(channel)
            if self.up:
                self._queue(True, channel)

    def unsubscribe(self, channel: bytes) -> None:
        """Forget ``channel`` now; Redis is told in the next batch."""
        self.channels.discard(channel)
        if channel in self._confirmed:
            self._confirmed.discard(channel)
            if self.up:
                self._queue(False, channel)

    def _queue(self, subscribe: bool, channel: bytes) -> None:
        self._outbox.append((subscribe, channel))
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.create_task(self._flush(), name=f"redis-pubsub-flush {self.name}")

    async def _flush(self) -> None:
        """Send what was queued in this loop iteration as few commands as possible, in order."""
        while self._outbox and self.up:
            outbox, self._outbox = self._outbox, []
            try:
                for subscribe, channels in _runs(outbox, self._options.batch, sharded=self._sharded):
                    await self._send(self._sub if subscribe else self._unsub, channels)
            except _CONNECTION_ERRORS as exc:  # the listener sees the same failure and reconnects
                log.debug("redis broker: sending to %s failed: %r", self.name, exc)
                return

    async def _send(self, command: str, channels: list[bytes]) -> None:
        await asyncio.wait_for(self._pubsub.execute_command(command, *channels), self._options.timeout)

    def _confirm_channel(self, channel: bytes) -> None:
        if channel in self.channels:
            self._confirmed.add(channel)
        for future in self._waiters.pop(channel, []):
            if not future.done():
                future.set_result(None)

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved here: a waiter that gave up must not warn

    # -- the listener -----------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._connect()
                self.failures = 0
                await self._listen()
            except (*_CONNECTION_ERRORS, LinkLost) as exc:
                self._lost(exc)
            except Exception as exc:  # a bug, not a fault of Redis: say so loudly, then carry on
                log.exception("redis broker: Pub/Sub listener of %s failed unexpectedly; reconnecting", self.name)
                self.failures = max(self.failures, 1)
                self._lost(exc)
            await self._drop_connection()
            await asyncio.sleep(self._backoff())

    def _lost(self, exc: BaseException) -> None:
        log.debug("redis broker: Pub/Sub connection to %s: %s", self.name, _describe(exc))
        if self.up or self.failures == 0:
            log.warning("redis broker: Pub/Sub connection to %s lost (%s); reconnecting", self.name, _describe(exc))
        self.failures += 1
        self._set_up(False)
        if self._on_lost is not None:
            self._on_lost(self, exc)

    def _backoff(self) -> float:
        """Exponential backoff with full jitter, between ``backoff_min`` and ``backoff_max``."""
        ceiling = min(self._options.backoff_max, self._options.backoff_min * 2 ** min(self.failures, 16))
        return random.uniform(self._options.backoff_min, max(ceiling, self._options.backoff_min))

    async def _connect(self) -> None:
        """Connect, subscribe every wanted channel in batches, wait for every confirmation."""
        self._confirmed.clear()
        self._outbox.clear()
        self._pubsub = self._client.pubsub()
        wanted = set(self.channels) | set(self._waiters)
        self.channels |= wanted
        await asyncio.wait_for(self._pubsub.execute_command("PING"), self._options.timeout)
        await self._read_until_pong()
        ordered = sorted(wanted, key=key_slot) if self._sharded else wanted
        for _, batch in _runs(((True, ch) for ch in ordered), self._options.batch, sharded=self._sharded):
            await self._send(self._sub, batch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._options.timeout
        while not wanted <= self._confirmed | (wanted - self.channels):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise LinkLost(f"subscriptions not confirmed within {self._options.timeout}s")
            await self._handle(await self._read(remaining))
        self._set_up(True)
        missed = [ch for ch in self.channels if ch not in self._confirmed]
        for ch in missed:  # asked for while we were resubscribing
            self._queue(True, ch)
        if self.failures:
            log.info(
                "redis broker: Pub/Sub connection to %s restored; %d channels resubscribed", self.name, len(wanted)
            )

    async def _read_until_pong(self) -> None:
        while True:
            response = await self._read(self._options.timeout)
            if _kind(response) == b"pong" or response in (b"PONG", "PONG"):
                return
            await self._handle(response)

    async def _read(self, seconds: float) -> Any:
        response = await self._pubsub.parse_response(block=False, timeout=seconds)
        if response is None:
            raise LinkLost(f"no reply within {seconds}s")
        return response

    async def _listen(self) -> None:
        ping_sent = False
        while True:
            response = await self._pubsub.parse_response(block=False, timeout=self._options.ping_interval)
            if response is None:
                if ping_sent:
                    raise LinkLost(f"no reply to PING within {self._options.ping_interval}s")
                await self._send("PING", [])
                ping_sent = True
                continue
            ping_sent = False
            await self._handle(response)

    async def _handle(self, response: Any) -> None:
        kind = _kind(response)
        if kind == self._message:
            channel = response[1]
            if channel in self._confirmed:
                self._on_message(channel, response[2])
        elif kind == self._confirm:
            self._confirm_channel(response[1])
        elif kind == b"sunsubscribe" and response[1] in self._confirmed:
            # Redis Cluster moved the channel's slot to another node: reroute from scratch.
            raise LinkLost(f"slot of {response[1]!r} moved")

    async def _drop_connection(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await pubsub.aclose()

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            if not up:
                self._confirmed.clear()
            self._on_state(self)


def _kind(response: Any) -> bytes | None:
    if isinstance(response, list | tuple) and response and isinstance(response[0], bytes):
        return response[0].lower()
    return None


def _runs(items: Iterable[tuple[bool, bytes]], batch: int, *, sharded: bool) -> Iterable[tuple[bool, list[bytes]]]:
    """Group consecutive (subscribe?, channel) items into commands of at most ``batch`` channels.

    Sharded: one command holds channels of one slot only (Redis refuses cross-slot SSUBSCRIBE)."""
    current: list[bytes] = []
    group: tuple[bool, int] | None = None
    for subscribe, channel in items:
        key = (subscribe, key_slot(channel) if sharded else 0)
        if (group is not None and key != group) or len(current) >= batch:
            yield _kind_of(group), current
            current = []
        group = key
        current.append(channel)
    if current:
        yield _kind_of(group), current


def _kind_of(group: tuple[bool, int] | None) -> bool:
    return group is not None and group[0]


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
