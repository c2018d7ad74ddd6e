"""What the Redis broker adds to the contract: several nodes on one Redis, faults and health.

Every test runs against real ``redis-server`` processes: the shared session server (or cluster)
where nothing is broken, a server of its own where the test stops, freezes or restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis_servers
from redis.crc import key_slot
from redis_servers import RedisCluster, RedisServer, free_port, require_redis, start_cluster, start_redis
from test_broker_contract import HISTORY, NO_HISTORY, Recorder, pub, redis_broker
from test_empty_positions import client, command

from fastapi_realtime import BrokerUnavailable, ChannelOptions, ClientInfo, Hub, HubSettings
from fastapi_realtime.brokers.redis import RedisBroker

WAIT = 10.0


class Watcher(Recorder):
    """A recorder that lets a test wait until what it recorded satisfies a condition."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def on_publication(self, channel: str, p: object) -> None:
        super().on_publication(channel, p)  # type: ignore[arg-type]
        self.changed.set()

    def on_join(self, channel: str, info: ClientInfo) -> None:
        super().on_join(channel, info)
        self.changed.set()

    def on_control(self, data: bytes) -> None:
        super().on_control(data)
        self.changed.set()

    def on_broker_state(self, up: bool) -> None:
        super().on_broker_state(up)
        self.changed.set()

    async def until(self, condition: Callable[[], bool], timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, to break."""
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


async def started(broker: RedisBroker) -> tuple[RedisBroker, Watcher]:
    events = Watcher()
    await broker.start(events)
    return broker, events


@pytest.fixture(params=["redis", "redis-cluster"])
async def two_nodes(request: pytest.FixtureRequest) -> AsyncIterator[list[tuple[RedisBroker, Watcher]]]:
    """Two brokers ("nodes") on one shared Redis or cluster, with the same key prefix."""
    if request.param == "redis":
        url, cluster = request.getfixturevalue("redis_server").url, False
    else:
        url, cluster = request.getfixturevalue("redis_cluster").url, True
    first = redis_broker(url, cluster=cluster)
    second = RedisBroker(url, cluster=cluster, prefix=first.prefix, timeout=3.0)
    nodes = [await started(first), await started(second)]
    try:
        yield nodes
    finally:
        for broker, _ in nodes:
            await broker.close()


async def test_two_nodes_see_each_others_publications_in_order_without_gaps(
    two_nodes: list[tuple[RedisBroker, Watcher]],
) -> None:
    (a, ea), (b, eb) = two_nodes
    for broker in (a, b):
        await broker.subscribe("room")

    async def publish_from(broker: RedisBroker, n: int) -> None:
        for i in range(n):
            await broker.publish("room", pub(i), HISTORY)

    await asyncio.gather(publish_from(a, 20), publish_from(b, 20))
    for events in (ea, eb):
        await events.until(lambda e=events: len(e.pubs) == 40)
        assert [p.offset for _, p in events.pubs] == list(range(1, 41))


async def test_two_nodes_share_presence_joins_and_control(two_nodes: list[tuple[RedisBroker, Watcher]]) -> None:
    (a, ea), (b, eb) = two_nodes
    await b.subscribe("room")
    alice, bob = ClientInfo(user="alice", client="c1"), ClientInfo(user="bob", client="c2")
    await a.add_presence("room", alice, ttl=60)
    await b.add_presence("room", bob, ttl=60)
    assert await a.presence("room") == await b.presence("room") == {"c1": alice, "c2": bob}
    assert await b.presence_stats("room") == (2, 2)
    await a.publish_join("room", alice)
    await eb.until(lambda: eb.joins == [("room", alice)])
    await a.publish_control(b'{"op":"x"}')
    for events in (ea, eb):
        await events.until(lambda e=events: e.controls == [b'{"op":"x"}'])
    await a.publish("room", pub(1), NO_HISTORY)
    await eb.until(lambda: len(eb.pubs) == 1)
    assert ea.pubs == []  # a is not subscribed


async def test_cluster_spreads_channels_over_primaries(redis_cluster: RedisCluster) -> None:
    broker, events = await started(redis_broker(redis_cluster.url, cluster=True))
    try:
        channels = [f"ch{i}" for i in range(30)]
        await asyncio.gather(*(broker.subscribe(channel) for channel in channels))  # batched per slot
        assert broker.healthy
        assert len(broker._links) == len(redis_cluster.nodes)  # one Pub/Sub connection per primary
        for channel in channels:
            await broker.publish(channel, pub(1), HISTORY)
        await events.until(lambda: len(events.pubs) == len(channels))
        assert sorted(ch for ch, _ in events.pubs) == sorted(channels)
    finally:
        await broker.close()


async def test_start_with_redis_unreachable_names_the_url_without_password() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    broker = RedisBroker(url, timeout=1.0)
    with pytest.raises(BrokerUnavailable) as raised:
        await broker.start(Watcher())
    message = str(raised.value)
    assert "s3cret" not in message
    assert f"redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}" in message
    assert "check that Redis is running" in message
    assert not broker.healthy


async def test_calls_fail_fast_with_broker_unavailable_while_redis_is_down(own_redis: RedisServer) -> None:
    broker, events = await started(RedisBroker(own_redis.url, timeout=1.0, backoff_max=0.2))
    try:
        await broker.subscribe("a")
        own_redis.stop()
        await events.until(lambda: events.states == [False])
        assert not broker.healthy
        calls = [
            broker.publish("a", pub(1), HISTORY),
            broker.publish("a", pub(1), NO_HISTORY),
            broker.history("a", since=None, limit=None, reverse=False, meta_ttl=60),
            broker.add_presence("a", ClientInfo(user="u", client="c"), ttl=10),
            broker.presence("a"),
            broker.publish_control(b"{}"),
            broker.subscribe("b"),
        ]
        for call in calls:
            async with asyncio.timeout(5):  # the broker's own timeout is 1 s: never a hang
                with pytest.raises(BrokerUnavailable):
                    await call
    finally:
        await broker.close()


async def test_restart_reconnects_resubscribes_and_reports_state(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fastapi_realtime")
    broker, events = await started(RedisBroker(own_redis.url, timeout=1.0, backoff_max=0.2))
    try:
        for channel in ("a", "b", "c"):
            await broker.subscribe(channel)
        before = await broker.publish("a", pub(1), HISTORY)
        await asyncio.to_thread(own_redis.restart)
        await events.until(lambda: events.states == [False, True])
        assert broker.healthy
        after = await broker.publish("a", pub(2), HISTORY)  # no persistence: the stream was lost
        assert after.offset == 1 and after.epoch != before.epoch
        await broker.publish("c", pub(3), NO_HISTORY)
        await events.until(lambda: [ch for ch, _ in events.pubs] == ["a", "a", "c"])
    finally:
        await broker.close()
    ours = [r for r in caplog.records if r.name.startswith("fastapi_realtime")]
    assert ours and all(r.exc_info is None for r in ours)
    assert sum("lost" in r.getMessage() for r in ours) == 1
    assert sum("restored" in r.getMessage() for r in ours) == 1


async def test_a_stalled_connection_is_detected_by_ping(own_redis: RedisServer) -> None:
    broker, events = await started(RedisBroker(own_redis.url, timeout=0.5, ping_interval=0.2, backoff_max=0.2))
    assert own_redis.process is not None
    try:
        await broker.subscribe("a")
        own_redis.process.send_signal(signal.SIGSTOP)  # the TCP connection stays open, nothing answers
        try:
            await events.until(lambda: events.states == [False])
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        await events.until(lambda: events.states == [False, True])
        await broker.publish("a", pub(1), NO_HISTORY)
        await events.until(lambda: len(events.pubs) == 1)
    finally:
        await broker.close()


async def test_history_survives_a_restart_with_persistence(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis", persistence=True)
    broker, events = await started(RedisBroker(server.url, timeout=1.0, backoff_max=0.2))
    try:
        top = await broker.publish("a", pub(1), HISTORY)
        await asyncio.to_thread(server.restart)
        await events.until(lambda: events.states == [False, True])
        result = await broker.history("a", since=None, limit=None, reverse=False, meta_ttl=3600)
        assert result.position == top
        assert [p.offset for p in result.publications] == [1]
    finally:
        await broker.close()
        server.stop()


async def test_a_failing_event_handler_does_not_stop_the_listener(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(Watcher):
        def on_publication(self, channel: str, p: object) -> None:
            super().on_publication(channel, p)
            if len(self.pubs) == 1:
                raise RuntimeError("handler bug")

    broker = redis_broker(redis_server.url)
    events = Failing()
    await broker.start(events)
    try:
        await broker.subscribe("a")
        await broker.publish("a", pub(1), NO_HISTORY)
        await broker.publish("a", pub(2), NO_HISTORY)
        await events.until(lambda: len(events.pubs) == 2)
        assert broker.healthy and events.states == []
    finally:
        await broker.close()
    assert any("handler bug" in r.getMessage() or r.exc_info for r in caplog.records)


def _move_slot(cluster: RedisCluster, slot: int, target: RedisServer) -> None:
    with target.client() as c:
        target_id = c.execute_command("CLUSTER", "MYID")
    for node in sorted(cluster.nodes, key=lambda n: n is not target):  # the new owner first
        with node.client() as c:
            c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)


async def test_cluster_slot_moved_to_another_primary_is_followed(redis_cluster: RedisCluster) -> None:
    broker, events = await started(redis_broker(redis_cluster.url, cluster=True))
    channel_key = f"{broker.prefix}:c:{{moving}}".encode()
    slot = key_slot(channel_key)
    owner = next(n for n in redis_cluster.nodes if _owns(n, slot))
    other = next(n for n in redis_cluster.nodes if n is not owner)
    try:
        await broker.subscribe("moving")
        await asyncio.to_thread(_move_slot, redis_cluster, slot, other)
        await events.until(lambda: events.states == [False, True])
        assert broker._routes[channel_key].name == f"127.0.0.1:{other.port}"
        await broker.publish("moving", pub(1), NO_HISTORY)
        await events.until(lambda: len(events.pubs) == 1)
    finally:
        await broker.close()
        await asyncio.to_thread(_move_slot, redis_cluster, slot, owner)
        await asyncio.to_thread(redis_cluster.wait_ok)


def _owns(node: RedisServer, slot: int) -> bool:
    with node.client() as c:
        for start, end, primary, *_replicas in c.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1]) == node.port
    return False


async def test_two_hubs_on_one_redis_share_publications_presence_and_disconnects(redis_server: RedisServer) -> None:
    settings = HubSettings(
        allow_anonymous=True,
        namespaces={"chat": ChannelOptions(history_size=10, presence=True)},
        presence_refresh_interval=60.0,
    )
    prefix = redis_broker(redis_server.url).prefix
    async with (
        Hub(settings, broker=RedisBroker(redis_server.url, prefix=prefix)) as hub_a,
        Hub(settings, broker=RedisBroker(redis_server.url, prefix=prefix)) as hub_b,
        client(hub_a) as transport,
    ):
        reply = await command(transport, {"id": 2, "subscribe": {"channel": "chat:r", "recoverable": True}})
        epoch = reply["subscribe"]["epoch"]
        position = await hub_b.publish("chat:r", {"from": "b"})
        assert position.offset == 1 and position.epoch == epoch
        push = orjson.loads((await transport.wait_sent(3))[2])["push"]
        assert push["channel"] == "chat:r" and push["pub"]["data"] == {"from": "b"} and push["pub"]["offset"] == 1
        assert list((await hub_b.presence("chat:r")).values())[0].user == ""
        await hub_b.disconnect("", code=3501, reason="bye")
        async with asyncio.timeout(WAIT):
            await transport.closed.wait()
        assert transport.closed_with == (3501, "bye")


def test_missing_redis_server_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_servers.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_redis()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="install Debian's redis-server package"):
        require_redis()


async def test_thousands_of_channels_are_subscribed_and_resubscribed_in_batches(own_redis: RedisServer) -> None:
    broker, events = await started(RedisBroker(own_redis.url, timeout=3.0, backoff_max=0.2, subscribe_batch=500))
    channels = [f"ch{i}" for i in range(2000)]
    try:
        await asyncio.gather(*(broker.subscribe(ch) for ch in channels))
        with own_redis.client() as c:
            assert c.info("commandstats")["cmdstat_subscribe"]["calls"] <= 6  # not one per channel
        await asyncio.to_thread(own_redis.restart)
        await events.until(lambda: events.states == [False, True])
        with own_redis.client() as c:  # a fresh server: its counters cover the resubscription only
            assert c.info("commandstats")["cmdstat_subscribe"]["calls"] == 5  # 2,001 channels / 500
        await broker.publish("ch1999", pub(1), NO_HISTORY)
        await events.until(lambda: [ch for ch, _ in events.pubs] == ["ch1999"])
    finally:
        await broker.close()


async def test_a_restarted_cluster_primary_is_reconnected_and_resubscribed(tmp_path: Path) -> None:
    cluster = await asyncio.to_thread(start_cluster, tmp_path)
    broker, events = await started(RedisBroker(cluster.url, cluster=True, timeout=2.0, backoff_max=0.2))
    try:
        channels = [f"ch{i}" for i in range(12)]
        for channel in channels:
            await broker.subscribe(channel)
        victim = cluster.nodes[1]
        on_victim = [
            ch
            for ch in channels
            if broker._routes[f"{broker.prefix}:c:{{{ch}}}".encode()].name.endswith(f":{victim.port}")
        ]
        assert on_victim
        await asyncio.to_thread(victim.restart)
        await events.until(lambda: events.states == [False, True], timeout=20)
        await asyncio.to_thread(cluster.wait_ok)
        for channel in channels:
            await broker.publish(channel, pub(1), HISTORY)
        await events.until(lambda: len(events.pubs) == len(channels))
    finally:
        await broker.close()
        await asyncio.to_thread(cluster.stop)


async def test_cluster_with_classic_pubsub_uses_one_connection(redis_cluster: RedisCluster) -> None:
    broker, events = await started(redis_broker(redis_cluster.url, cluster=True, sharded_pubsub=False))
    try:
        channels = [f"ch{i}" for i in range(10)]
        await asyncio.gather(*(broker.subscribe(channel) for channel in channels))
        assert len(broker._links) == 1
        for channel in channels:
            await broker.publish(channel, pub(1), HISTORY)  # scripts run on each channel's primary
        await events.until(lambda: len(events.pubs) == len(channels))
    finally:
        await broker.close()
