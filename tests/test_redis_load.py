"""The Redis broker under bursts.

- Commands: redis-py's pools raise "Too many connections" as soon as every connection is busy;
  the broker makes a call beyond ``max_connections`` wait for a free connection within its
  ``timeout`` instead, and raises :class:`BrokerUnavailable` only when that runs out (Redis frozen).
- Pub/Sub: messages that arrived together are dispatched within one loop turn, before the hub's
  writers run, so the hub sends them batched (several per WebSocket frame).
"""

from __future__ import annotations

import asyncio
import signal
import uuid

import pytest
import redis
from redis_servers import RedisCluster, RedisServer
from test_broker_contract import HISTORY, NO_HISTORY, pub
from test_redis_broker import Watcher, own_redis, started

from fastapi_realtime import BrokerUnavailable
from fastapi_realtime.brokers.redis import RedisBroker
from fastapi_realtime.brokers.redis_wire import ChannelKeys, encode_publication

BURST = 200
POOL = 5

__all__ = ["own_redis"]  # the fixture, shared with test_redis_broker


async def _burst(broker: RedisBroker, events: Watcher) -> None:
    """``BURST`` concurrent publishes (half through the history script, half plain PUBLISH) all succeed."""
    await broker.subscribe("a")
    options = [HISTORY, NO_HISTORY]
    results = await asyncio.gather(*(broker.publish("a", pub(i), options[i % 2]) for i in range(BURST)))
    assert sorted(r.offset for r in results if r.offset) == list(range(1, BURST // 2 + 1))
    await events.until(lambda: len(events.pubs) == BURST)


async def test_a_burst_beyond_the_pool_waits_for_free_connections(own_redis: RedisServer) -> None:
    broker, events = await started(RedisBroker(own_redis.url, timeout=3.0, max_connections=POOL))
    try:
        await _burst(broker, events)
        with own_redis.client() as c:  # the pool, the Pub/Sub connection and this one
            assert c.info("clients")["connected_clients"] <= POOL + 2
    finally:
        await broker.close()


async def test_a_burst_beyond_the_pool_waits_on_a_cluster(redis_cluster: RedisCluster) -> None:
    broker = RedisBroker(redis_cluster.url, cluster=True, prefix=f"t{uuid.uuid4().hex[:12]}", max_connections=POOL)
    broker, events = await started(broker)
    try:
        await _burst(broker, events)
    finally:
        await broker.close()


async def test_a_burst_on_a_frozen_redis_fails_within_the_timeout(own_redis: RedisServer) -> None:
    broker, _ = await started(RedisBroker(own_redis.url, timeout=0.5, max_connections=POOL, backoff_max=0.2))
    assert own_redis.process is not None
    own_redis.process.send_signal(signal.SIGSTOP)  # connections stay open, nothing answers
    try:
        async with asyncio.timeout(5):  # a hang guard: the broker's own timeout is 0.5 s
            results = await asyncio.gather(
                *(broker.publish("a", pub(i), HISTORY) for i in range(BURST)), return_exceptions=True
            )
        assert all(isinstance(r, BrokerUnavailable) for r in results), {type(r).__name__ for r in results}
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
        await broker.close()


def test_max_connections_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        RedisBroker(max_connections=0)


class TurnRecorder(Watcher):
    """Records, for each publication, the loop turn it was dispatched in (counted by a ticker task)."""

    def __init__(self) -> None:
        super().__init__()
        self.turn = 0
        self.turns: list[int] = []

    def on_publication(self, channel: str, p: object) -> None:
        self.turns.append(self.turn)
        super().on_publication(channel, p)

    async def tick(self) -> None:
        while True:
            self.turn += 1
            await asyncio.sleep(0)


async def test_messages_received_together_are_dispatched_in_one_loop_turn(redis_server: RedisServer) -> None:
    """A burst in one pipeline reaches the broker in a few socket reads; every message already
    received is handed to the hub before the loop runs its writers (not one message per turn)."""
    events = TurnRecorder()
    broker = RedisBroker(redis_server.url, prefix=f"t{uuid.uuid4().hex[:12]}", timeout=3.0)
    await broker.start(events)
    ticker = asyncio.create_task(events.tick())
    try:
        await broker.subscribe("a")
        channel = ChannelKeys.of(broker.prefix, "a").pubsub

        def burst() -> None:
            with redis.Redis.from_url(redis_server.url) as c:
                pipe = c.pipeline(transaction=False)
                for i in range(BURST):
                    pipe.publish(channel, b"p0:" + encode_publication(pub(i)))
                pipe.execute()

        await asyncio.to_thread(burst)
        await events.until(lambda: len(events.pubs) == BURST)
        assert [p.data for _, p in events.pubs] == [pub(i).data for i in range(BURST)]
        assert len(set(events.turns)) <= 10, f"{BURST} messages took {len(set(events.turns))} loop turns"
    finally:
        ticker.cancel()
        await broker.close()
