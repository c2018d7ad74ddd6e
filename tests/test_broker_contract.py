"""The broker contract: every broker must pass this module unchanged.

A new broker is added by giving ``broker_env`` one more parameter: a factory for the broker
and a way to let ``seconds`` pass for its expiry rules.

Redis delivers through Pub/Sub, after ``publish`` returned: its env wraps the broker in
:class:`Settled`, which waits (``RedisBroker.flush``) until what was published reached the
events before the test looks at them. The Redis envs run against a real ``redis-server`` and a
real 3-primary Redis Cluster (see ``redis_servers.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from fastapi_realtime.brokers import (
    Broker,
    BrokerEvents,
    HistoryResult,
    MemoryBroker,
    PublishOptions,
    StreamLimitExceeded,
)
from fastapi_realtime.brokers.redis import RedisBroker
from fastapi_realtime.protocol.messages import ClientInfo, Publication, StreamPosition

HISTORY = PublishOptions(history_size=5, history_ttl=60.0, meta_ttl=3600.0)
NO_HISTORY = PublishOptions()


@dataclass
class Recorder:
    """A BrokerEvents implementation that records every event."""

    pubs: list[tuple[str, Publication]] = field(default_factory=list)
    joins: list[tuple[str, ClientInfo]] = field(default_factory=list)
    leaves: list[tuple[str, ClientInfo]] = field(default_factory=list)
    controls: list[bytes] = field(default_factory=list)
    states: list[bool] = field(default_factory=list)

    def on_publication(self, channel: str, pub: Publication) -> None:
        self.pubs.append((channel, pub))

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info))

    def on_control(self, data: bytes) -> None:
        self.controls.append(data)

    def on_broker_state(self, up: bool) -> None:
        self.states.append(up)


@dataclass
class BrokerEnv:
    broker: Broker
    events: Recorder
    let_pass: Callable[[float], None]
    """Make ``seconds`` pass for the broker's expiry rules."""
    capped: Callable[[int], Broker]
    """Another broker of the same kind and clock, with ``max_empty_streams`` set."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Settled(Broker):
    """A Redis broker whose fan-out calls return once what they published was delivered."""

    def __init__(self, inner: RedisBroker) -> None:
        self.inner = inner

    @property
    def healthy(self) -> bool:
        return self.inner.healthy

    async def start(self, events: BrokerEvents) -> None:
        await self.inner.start(events)

    async def close(self) -> None:
        await self.inner.close()

    async def subscribe(self, channel: str) -> None:
        await self.inner.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self.inner.unsubscribe(channel)

    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> StreamPosition:
        position = await self.inner.publish(channel, pub, opts)
        await self.inner.flush()
        return position

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self.inner.publish_join(channel, info)
        await self.inner.flush()

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self.inner.publish_leave(channel, info)
        await self.inner.flush()

    async def publish_control(self, data: bytes) -> None:
        await self.inner.publish_control(data)
        await self.inner.flush()

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int | None, reverse: bool, meta_ttl: float
    ) -> HistoryResult:
        return await self.inner.history(channel, since=since, limit=limit, reverse=reverse, meta_ttl=meta_ttl)

    async def remove_history(self, channel: str) -> None:
        await self.inner.remove_history(channel)

    async def add_presence(self, channel: str, info: ClientInfo, ttl: float) -> None:
        await self.inner.add_presence(channel, info, ttl)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        await self.inner.remove_presence(channel, client_id)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return await self.inner.presence(channel)


async def memory_env(request: pytest.FixtureRequest) -> BrokerEnv:
    clock = FakeClock()

    def make(cap: int = 100_000) -> MemoryBroker:
        return MemoryBroker(clock=clock, max_empty_streams=cap)

    return BrokerEnv(make(), Recorder(), clock.advance, make)


def redis_broker(
    url: str,
    *,
    cluster: bool = False,
    clock: FakeClock | None = None,
    max_empty_streams: int = 100_000,
    sharded_pubsub: bool | None = None,
) -> RedisBroker:
    """A broker on its own key prefix (tests share one server), with short timeouts."""
    return RedisBroker(
        url,
        cluster=cluster,
        sharded_pubsub=sharded_pubsub,
        prefix=f"t{uuid.uuid4().hex[:12]}",
        timeout=3.0,
        clock=clock,
        max_empty_streams=max_empty_streams,
    )


def _redis_env(url: str, *, cluster: bool, sharded_pubsub: bool | None = None) -> BrokerEnv:
    clock = FakeClock()

    def make(cap: int = 100_000) -> Settled:
        return Settled(
            redis_broker(url, cluster=cluster, clock=clock, max_empty_streams=cap, sharded_pubsub=sharded_pubsub)
        )

    return BrokerEnv(make(), Recorder(), clock.advance, make)


async def redis_env(request: pytest.FixtureRequest) -> BrokerEnv:
    return _redis_env(request.getfixturevalue("redis_server").url, cluster=False)


async def redis_cluster_env(request: pytest.FixtureRequest) -> BrokerEnv:
    return _redis_env(request.getfixturevalue("redis_cluster").url, cluster=True)


async def redis_cluster_classic_env(request: pytest.FixtureRequest) -> BrokerEnv:
    """The cluster with classic PUBLISH/SUBSCRIBE, as on a cluster older than Redis 7."""
    return _redis_env(request.getfixturevalue("redis_cluster").url, cluster=True, sharded_pubsub=False)


@pytest.fixture(
    params=[memory_env, redis_env, redis_cluster_env, redis_cluster_classic_env],
    ids=["memory", "redis", "redis-cluster", "redis-cluster-classic-pubsub"],
)
async def env(request: pytest.FixtureRequest) -> AsyncIterator[BrokerEnv]:
    e: BrokerEnv = await request.param(request)
    await e.broker.start(e.events)
    try:
        yield e
    finally:
        await e.broker.close()


def pub(n: int) -> Publication:
    return Publication(data=b'{"n":%d}' % n)


async def test_publish_reaches_subscribed_hub_only(env: BrokerEnv) -> None:
    await env.broker.subscribe("a")
    await env.broker.publish("a", pub(1), NO_HISTORY)
    await env.broker.publish("b", pub(2), NO_HISTORY)
    assert [(ch, p.data) for ch, p in env.events.pubs] == [("a", b'{"n":1}')]


async def test_unsubscribe_stops_delivery(env: BrokerEnv) -> None:
    await env.broker.subscribe("a")
    await env.broker.unsubscribe("a")
    await env.broker.publish("a", pub(1), NO_HISTORY)
    assert env.events.pubs == []


async def test_publish_without_history_has_no_position(env: BrokerEnv) -> None:
    await env.broker.subscribe("a")
    position = await env.broker.publish("a", pub(1), NO_HISTORY)
    assert position == StreamPosition(0, "")
    assert env.events.pubs[0][1].offset == 0


async def test_offsets_are_monotonic_and_gap_free_with_a_stable_epoch(env: BrokerEnv) -> None:
    await env.broker.subscribe("a")
    positions = [await env.broker.publish("a", pub(i), HISTORY) for i in range(1, 8)]
    assert [p.offset for p in positions] == list(range(1, 8))
    assert len({p.epoch for p in positions}) == 1 and positions[0].epoch
    assert [p.offset for _, p in env.events.pubs] == list(range(1, 8))


async def test_history_keeps_the_newest_history_size(env: BrokerEnv) -> None:
    for i in range(1, 8):
        await env.broker.publish("a", pub(i), HISTORY)
    result = await env.broker.history("a", since=None, limit=None, reverse=False, meta_ttl=3600)
    assert [p.offset for p in result.publications] == [3, 4, 5, 6, 7]
    assert [p.data for p in result.publications][0] == b'{"n":3}'
    assert result.position.offset == 7


async def test_history_since_limit_and_reverse(env: BrokerEnv) -> None:
    top = StreamPosition(0, "")
    for i in range(1, 6):
        top = await env.broker.publish("a", pub(i), HISTORY)
    since = StreamPosition(2, top.epoch)
    after = await env.broker.history("a", since=since, limit=None, reverse=False, meta_ttl=3600)
    assert [p.offset for p in after.publications] == [3, 4, 5]
    limited = await env.broker.history("a", since=None, limit=2, reverse=False, meta_ttl=3600)
    assert [p.offset for p in limited.publications] == [1, 2]
    newest = await env.broker.history("a", since=None, limit=2, reverse=True, meta_ttl=3600)
    assert [p.offset for p in newest.publications] == [5, 4]
    before = await env.broker.history("a", since=StreamPosition(4, top.epoch), limit=2, reverse=True, meta_ttl=3600)
    assert [p.offset for p in before.publications] == [3, 2]  # reverse paging goes backwards from since
    only_position = await env.broker.history("a", since=None, limit=0, reverse=False, meta_ttl=3600)
    assert only_position.publications == [] and only_position.position == top


async def test_history_of_a_new_channel_gives_a_stable_position(env: BrokerEnv) -> None:
    first = await env.broker.history("fresh", since=None, limit=0, reverse=False, meta_ttl=3600)
    second = await env.broker.history("fresh", since=None, limit=0, reverse=False, meta_ttl=3600)
    assert first.position.offset == 0 and first.position.epoch
    assert second.position == first.position
    position = await env.broker.publish("fresh", pub(1), HISTORY)
    assert position == StreamPosition(1, first.position.epoch)


async def test_history_expires_after_ttl_but_offset_and_epoch_stay(env: BrokerEnv) -> None:
    top = await env.broker.publish("a", pub(1), HISTORY)
    env.let_pass(HISTORY.history_ttl + 1)
    result = await env.broker.history("a", since=None, limit=None, reverse=False, meta_ttl=3600)
    assert result.publications == []
    assert result.position == top


async def test_stream_meta_expiry_starts_a_new_epoch(env: BrokerEnv) -> None:
    top = await env.broker.publish("a", pub(1), HISTORY)
    env.let_pass(HISTORY.meta_ttl + 1)
    after = await env.broker.publish("a", pub(2), HISTORY)
    assert after.offset == 1
    assert after.epoch != top.epoch


async def test_remove_history_keeps_position(env: BrokerEnv) -> None:
    top = await env.broker.publish("a", pub(1), HISTORY)
    await env.broker.remove_history("a")
    result = await env.broker.history("a", since=None, limit=None, reverse=False, meta_ttl=3600)
    assert result.publications == [] and result.position == top


async def test_presence_add_remove_and_stats(env: BrokerEnv) -> None:
    alice1 = ClientInfo(user="alice", client="c1", conn_info=b'{"name":"A"}')
    alice2 = ClientInfo(user="alice", client="c2")
    bob = ClientInfo(user="bob", client="c3")
    for info in (alice1, alice2, bob):
        await env.broker.add_presence("room", info, ttl=60)
    assert await env.broker.presence("room") == {"c1": alice1, "c2": alice2, "c3": bob}
    assert await env.broker.presence_stats("room") == (3, 2)
    await env.broker.remove_presence("room", "c2")
    assert set(await env.broker.presence("room")) == {"c1", "c3"}
    assert await env.broker.presence("other") == {}


async def test_presence_entries_expire_unless_refreshed(env: BrokerEnv) -> None:
    await env.broker.add_presence("room", ClientInfo(user="a", client="c1"), ttl=10)
    await env.broker.add_presence("room", ClientInfo(user="b", client="c2"), ttl=10)
    env.let_pass(6)
    await env.broker.add_presence("room", ClientInfo(user="b", client="c2"), ttl=10)
    env.let_pass(6)
    assert set(await env.broker.presence("room")) == {"c2"}


async def test_join_and_leave_reach_subscribed_hubs(env: BrokerEnv) -> None:
    info = ClientInfo(user="a", client="c1")
    await env.broker.publish_join("room", info)
    await env.broker.subscribe("room")
    await env.broker.publish_join("room", info)
    await env.broker.publish_leave("room", info)
    assert env.events.joins == [("room", info)]
    assert env.events.leaves == [("room", info)]


async def test_control_messages_reach_every_hub(env: BrokerEnv) -> None:
    await env.broker.publish_control(b'{"op":"x"}')
    assert env.events.controls == [b'{"op":"x"}']


async def test_close_is_idempotent(env: BrokerEnv) -> None:
    await env.broker.close()
    await env.broker.close()


# -- positions of never-published channels: short-lived, capped placeholders ------------------


async def test_position_of_a_never_published_channel_is_short_lived(env: BrokerEnv) -> None:
    first = await env.broker.history("fresh", since=None, limit=0, reverse=False, meta_ttl=10)
    env.let_pass(11)
    second = await env.broker.history("fresh", since=None, limit=0, reverse=False, meta_ttl=10)
    assert second.position.offset == 0 and second.position.epoch != first.position.epoch


async def test_reading_an_empty_position_again_keeps_it(env: BrokerEnv) -> None:
    first = await env.broker.history("fresh", since=None, limit=0, reverse=False, meta_ttl=10)
    for _ in range(3):
        env.let_pass(6)
        again = await env.broker.history("fresh", since=None, limit=0, reverse=False, meta_ttl=10)
        assert again.position == first.position


async def test_first_publication_continues_the_placeholder_epoch_and_keeps_the_stream(env: BrokerEnv) -> None:
    empty = await env.broker.history("fresh", since=None, limit=0, reverse=False, meta_ttl=10)
    env.let_pass(5)
    position = await env.broker.publish("fresh", pub(1), HISTORY)
    assert position == StreamPosition(1, empty.position.epoch)
    env.let_pass(HISTORY.meta_ttl - 10)  # the publication's meta_ttl now applies, not the short one
    result = await env.broker.history("fresh", since=empty.position, limit=None, reverse=False, meta_ttl=10)
    assert result.position == position


async def test_placeholders_are_capped_with_a_clear_error(env: BrokerEnv) -> None:
    capped = env.capped(2)
    await capped.start(Recorder())
    try:
        for channel in ("e1", "e2"):
            await capped.history(channel, since=None, limit=0, reverse=False, meta_ttl=10)
        with pytest.raises(StreamLimitExceeded):
            await capped.history("e3", since=None, limit=0, reverse=False, meta_ttl=10)
        again = await capped.history("e1", since=None, limit=0, reverse=False, meta_ttl=10)  # existing: fine
        assert again.position.offset == 0
        await capped.publish("e1", pub(1), HISTORY)  # e1 is a stream now, not a placeholder
        await capped.history("e3", since=None, limit=0, reverse=False, meta_ttl=10)
        env.let_pass(11)  # the placeholders expired: room again
        for channel in ("e4", "e5"):
            await capped.history(channel, since=None, limit=0, reverse=False, meta_ttl=10)
    finally:
        await capped.close()
