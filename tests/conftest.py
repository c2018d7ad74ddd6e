"""Shared fixtures: fresh hubs and real servers on free 127.0.0.1 ports."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from namespaces import CHAT

from fastapi_realtime import ChannelOptions, Hub, HubSettings

NAMESPACES = {
    "": ChannelOptions(),
    "chat": CHAT,
    "news": ChannelOptions(history_size=10),
}


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    """A started hub on the in-memory broker, anonymous connections allowed."""
    async with Hub(HubSettings(allow_anonymous=True, namespaces=NAMESPACES)) as h:
        yield h
