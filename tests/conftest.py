"""Shared fixtures: fresh hubs and real servers on free 127.0.0.1 ports."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fastapi_realtime import ChannelOptions, Hub, HubSettings  # noqa: E402

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


async def wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``predicate()`` is true, yielding to the loop between checks."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
