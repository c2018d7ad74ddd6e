"""Shared fixtures: fresh hubs and real servers on free 127.0.0.1 ports."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from redis_servers import RedisCluster, RedisServer, redis_cluster_fixture, redis_server_fixture

from fastapi_realtime import ChannelOptions, Hub, HubSettings

NAMESPACES = {
    "": ChannelOptions(),
    "chat": ChannelOptions(history_size=100, presence=True, join_leave=True, allow_publish=True),
    "news": ChannelOptions(history_size=10),
}


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    """A started hub on the in-memory broker, anonymous connections allowed."""
    async with Hub(HubSettings(allow_anonymous=True, namespaces=NAMESPACES)) as h:
        yield h


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the session (skipped locally when absent; fails under CI=true)."""
    yield from redis_server_fixture()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """One real 3-primary Redis Cluster for the session (same skip/fail rule)."""
    yield from redis_cluster_fixture()
