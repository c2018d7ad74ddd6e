"""The Redis broker's command connections: a burst beyond ``max_connections`` waits, never fails at once.

redis-py's pools raise "Too many connections" as soon as every connection is busy; the broker makes
such calls wait for a free connection within its ``timeout`` instead, and raises
:class:`BrokerUnavailable` only when that runs out (Redis frozen).
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_servers import RedisCluster, RedisServer, start_redis
from test_broker_contract import HISTORY, NO_HISTORY, pub
from test_redis_broker import Watcher, started

from fastapi_realtime import BrokerUnavailable
from fastapi_realtime.brokers.redis import RedisBroker

BURST = 200
POOL = 5


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


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
