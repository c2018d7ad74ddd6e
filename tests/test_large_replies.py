"""Replies are bounded by their own rule, never by the slow-consumer rule.

A resubscribe recovering 2 MB of missed publications (within ``recovery_max_publications``)
and a ``history`` with ``limit: -1`` over a 10 MB history are answered in full, although
the live queue limit is 1 MiB; past ``client_reply_max_bytes`` a history is refused with
error 106 and a recovery answered ``recovered: false``; the connection stays open either
way. A client that does not read its replies gets no further command read.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from fakes import FakeTransport
from fastapi import FastAPI
from servers import running_server
from test_sdk_python import (
    SDK_TRANSPORT_CLOSED,
    WAIT,
    _drop_transport,
    connected,
    hs256,
    make_hub,
    serve,
    subscribed,
    take_publications,
)
from wsclient import ProtocolClient

from fastapi_realtime import ChannelOptions, ErrorCode, Hub, HubSettings
from fastapi_realtime.protocol.codecs import CentrifugeCodec
from fastapi_realtime.session import SessionClosed

KB10 = "x" * 10_000
BIG = {"": ChannelOptions(), "big": ChannelOptions(history_size=1000, history_ttl=600)}


async def test_the_sdk_recovers_a_2_mb_gap_without_being_cut_off_as_slow() -> None:
    hub = make_hub(namespaces=BIG)
    assert hub.settings.client_queue_max_bytes == 1024 * 1024
    channel = "big:feed"
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack, token=hs256("alice"))
        _, sub_events = await subscribed(client, channel, recoverable=True, positioned=True)
        await hub.publish(channel, {"n": 0})
        assert [p.offset for p in await take_publications(sub_events, 1)] == [1]

        events.hold_reconnect = asyncio.Event()
        try:
            await _drop_transport(client)
            await events.next("connecting")  # connect() itself
            assert (await events.next("connecting")).code == SDK_TRANSPORT_CLOSED
            async with asyncio.timeout(WAIT):
                await hub.wait_idle()
            missed = 200  # 200 x 10 KB = 2 MB, twice the live queue limit
            for n in range(1, missed + 1):
                await hub.publish(channel, {"n": n, "pad": KB10})
        finally:
            events.hold_reconnect.set()

        await sub_events.next("subscribed")  # the first subscribe
        again = await sub_events.next("subscribed")
        assert (again.was_recovering, again.recovered) == (True, True)
        recovered = await take_publications(sub_events, missed)
        assert [p.data["n"] for p in recovered] == list(range(1, missed + 1))
        await hub.publish(channel, {"n": missed + 1})
        assert (await sub_events.next("publication")).pub.data == {"n": missed + 1}
        assert [e.code for e in events.of("disconnected")] == []
        assert len(events.of("connected")) == 2  # the first connect and one reconnect, no loop


@contextlib.asynccontextmanager
async def protocol_client(**settings: Any) -> Any:
    hub = Hub(HubSettings(allow_anonymous=True, ping_interval=0, namespaces=BIG, **settings))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server(app) as server:
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", max_size=None)
        client.timeout = WAIT
        try:
            yield hub, client
        finally:
            await client.close()


async def fill(hub: Hub, channel: str, count: int) -> None:
    for n in range(count):
        await hub.publish(channel, {"n": n, "pad": KB10})


async def test_history_without_a_limit_over_a_10_mb_history_is_answered_in_full() -> None:
    async with protocol_client() as (hub, client):
        await fill(hub, "big:log", 1000)  # 10 MB kept
        await client.command("subscribe", {"channel": "big:log"})
        reply = await client.command("history", {"channel": "big:log", "limit": -1})
        pubs = reply["history"]["publications"]
        assert [p["data"]["n"] for p in pubs] == list(range(1000))
        assert (await client.command("presence_stats", {"channel": "big:log"}))["error"]["code"] == 108  # still open


async def test_history_over_client_reply_max_bytes_is_refused_with_106_and_the_connection_stays() -> None:
    async with protocol_client(client_reply_max_bytes=1024 * 1024) as (hub, client):
        await fill(hub, "big:log", 200)  # 2 MB kept
        await client.command("subscribe", {"channel": "big:log"})
        reply = await client.command("history", {"channel": "big:log", "limit": -1})
        assert reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
        assert "client_reply_max_bytes" in reply["error"]["message"]
        reply = await client.command("history", {"channel": "big:log", "limit": 10})
        assert len(reply["history"]["publications"]) == 10


async def test_a_recovery_over_client_reply_max_bytes_is_answered_not_recovered() -> None:
    async with protocol_client(client_reply_max_bytes=1024 * 1024) as (hub, client):
        first = await client.command("subscribe", {"channel": "big:feed", "recoverable": True, "positioned": True})
        epoch = first["subscribe"]["epoch"]
        await client.command("unsubscribe", {"channel": "big:feed"})
        await fill(hub, "big:feed", 200)  # a 2 MB gap
        request = {"channel": "big:feed", "recover": True, "epoch": epoch, "offset": 0, "recoverable": True}
        again = (await client.command("subscribe", request))["subscribe"]
        assert again["was_recovering"] and not again.get("recovered")
        assert "publications" not in again and again["offset"] == 200
        await fill(hub, "big:feed", 1)
        assert (await client.next_push())["pub"]["offset"] == 201  # live publications flow on


async def test_a_client_that_does_not_read_its_replies_gets_no_further_command_read() -> None:
    async with Hub(HubSettings(client_queue_max_bytes=1000)) as hub:
        transport = FakeTransport()
        session = hub.open_session(transport, CentrifugeCodec())
        transport.block()  # the client stops reading
        # Replies are not "slow", however large: the first goes to the writer and waits on the
        # socket; the second (too large to share its frame) stays queued, over the limit.
        assert session.enqueue_reply("r" * 40_000) and session.enqueue_reply("s" * 40_000)
        assert not session.closed
        transport.feed("next command")
        reading = asyncio.ensure_future(session.receive())
        done, _ = await asyncio.wait((reading,), timeout=0.2)  # bounded: it must not complete
        assert not done
        transport.unblock()
        assert await asyncio.wait_for(reading, WAIT) == "next command"
        session.close()
        with pytest.raises(SessionClosed):
            await session.receive()
