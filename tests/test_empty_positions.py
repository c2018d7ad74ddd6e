"""Positioned subscribes to never-published channels leave bounded state (issue 7, item 11).

A positioned subscribe to a channel nobody published to gets offset 0 and an epoch that the
broker keeps only ``history_empty_ttl`` seconds (capped by the broker's ``max_empty_streams``,
error 106 beyond it); a publication within that time continues the epoch, so the client
recovers from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from fakes import FakeTransport
from test_broker_contract import FakeClock

from fastapi_realtime import ChannelOptions, ErrorCode, Hub, HubSettings, MemoryBroker, ReplyError
from fastapi_realtime.client import ClientHandler
from fastapi_realtime.protocol.codecs import CentrifugeCodec

SETTINGS = HubSettings(
    allow_anonymous=True, namespaces={"news": ChannelOptions(history_size=10)}, history_empty_ttl=30.0
)


@asynccontextmanager
async def client(hub: Hub) -> AsyncIterator[FakeTransport]:
    """A connected protocol client (its transport)."""
    transport, codec = FakeTransport(), CentrifugeCodec()
    session = hub.open_session(transport, codec, user=None)
    runner = asyncio.create_task(hub.serve(session, ClientHandler(hub, session, codec).serve))
    transport.feed('{"id":1,"connect":{}}')
    await transport.wait_sent(1)
    try:
        yield transport
    finally:
        session.close()
        await asyncio.wait_for(runner, 5)


async def command(transport: FakeTransport, cmd: dict[str, Any]) -> dict[str, Any]:
    count = len(transport.messages())
    transport.feed(orjson.dumps(cmd).decode())
    reply: dict[str, Any] = orjson.loads((await transport.wait_sent(count + 1))[count])
    return reply


async def test_a_client_positioned_on_a_never_published_channel_recovers_its_first_publications() -> None:
    async with Hub(SETTINGS) as hub:
        async with client(hub) as transport:
            reply = await command(transport, {"id": 2, "subscribe": {"channel": "news:new", "recoverable": True}})
            epoch = reply["subscribe"]["epoch"]
            assert epoch and "offset" not in reply["subscribe"]  # offset 0
        for n in range(3):  # published while the client was away
            await hub.publish("news:new", {"n": n})
        async with client(hub) as transport:
            recover = {"channel": "news:new", "recover": True, "offset": 0, "epoch": epoch}
            reply = await command(transport, {"id": 2, "subscribe": recover})
    result = reply["subscribe"]
    assert result["recovered"] is True and result["epoch"] == epoch
    assert [p["data"]["n"] for p in result["publications"]] == [0, 1, 2]


async def test_positions_of_unpublished_channels_expire_after_history_empty_ttl() -> None:
    clock = FakeClock()
    broker = MemoryBroker(clock=clock)
    async with Hub(SETTINGS, broker=broker) as hub, client(hub) as transport:
        for i in range(50):
            channel = f"news:probe{i}"
            await command(transport, {"id": 2 + 2 * i, "subscribe": {"channel": channel, "positioned": True}})
            await command(transport, {"id": 3 + 2 * i, "unsubscribe": {"channel": channel}})
        assert broker.stats["streams"] == 50
        clock.advance(SETTINGS.history_empty_ttl + 1)
        broker.sweep()
        assert broker.stats["streams"] == 0


async def test_the_cap_on_unpublished_positions_answers_106_and_keeps_the_client() -> None:
    async with Hub(SETTINGS, broker=MemoryBroker(max_empty_streams=2)) as hub, client(hub) as transport:
        for i in range(2):
            reply = await command(transport, {"id": 2 + i, "subscribe": {"channel": f"news:c{i}", "positioned": True}})
            assert "error" not in reply
        reply = await command(transport, {"id": 9, "subscribe": {"channel": "news:c9", "positioned": True}})
        assert reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
        with pytest.raises(ReplyError) as raised:
            await hub.history("news:c10")
        assert raised.value.code == ErrorCode.LIMIT_EXCEEDED
        await hub.publish("news:c0", "x")  # a published channel is no placeholder: room for one more
        reply = await command(transport, {"id": 10, "subscribe": {"channel": "news:c9", "positioned": True}})
        assert "error" not in reply
        assert transport.closed_with is None
