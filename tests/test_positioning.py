"""Positioned subscriptions detect gaps in a live stream and make the client resubscribe."""

from __future__ import annotations

import asyncio

import orjson
from fakes import FakeTransport

from fastapi_realtime import ChannelOptions, Hub, HubSettings
from fastapi_realtime.client import ClientHandler
from fastapi_realtime.protocol.codecs import CentrifugeCodec


async def test_a_gap_unsubscribes_the_protocol_client_with_2500_so_it_resubscribes_and_recovers() -> None:
    settings = HubSettings(allow_anonymous=True, namespaces={"news": ChannelOptions(history_size=10)})
    async with Hub(settings) as hub:
        transport, codec = FakeTransport(), CentrifugeCodec()
        session = hub.open_session(transport, codec, user=None)
        handler = ClientHandler(hub, session, codec)
        runner = asyncio.create_task(hub.serve(session, handler.serve))
        transport.feed('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"news:a","positioned":true}}')
        await transport.wait_sent(2)
        await hub.publish("news:a", "one")
        await transport.wait_sent(3)
        session.subscriptions["news:a"].offset = 0  # as if publication 1 had been lost on the way
        await hub.publish("news:a", "two")
        messages = [orjson.loads(m) for m in await transport.wait_sent(4)]
        assert messages[3] == {
            "push": {"channel": "news:a", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}
        }
        assert "news:a" not in session.subscriptions
        assert not session.closed  # only the subscription ends; the client resubscribes with recovery
        session.close()
        await asyncio.wait_for(runner, 5)
