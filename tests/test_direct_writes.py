"""Sessions on a transport with a direct write (``write_now``, as our uvicorn WebSocket
protocol has): a client that keeps up gets every frame at once, without a queue; one that
stops reading gets the rest later, in order, and is still closed with 3008 past its limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from fakes import FakeDirectTransport, FakeTransport

from fastapi_realtime import DisconnectCode, Hub, HubSettings
from fastapi_realtime.protocol.codecs import CentrifugeCodec, RawCodec
from fastapi_realtime.session import Session

WAIT = 5.0


@asynccontextmanager
async def direct_session(hub: Hub) -> AsyncIterator[tuple[Session, FakeDirectTransport]]:
    """A served tutorial-style session on a direct transport, in room ``room``."""
    transport = FakeDirectTransport()
    session = hub.open_session(transport, RawCodec(), user="u")

    async def read_all() -> None:
        while True:
            await session.receive()

    runner = asyncio.create_task(hub.serve(session, read_all))
    await hub.subscribe(session, "room")
    session.finish_subscribe("room")
    try:
        yield session, transport
    finally:
        session.close()
        await asyncio.wait_for(runner, WAIT)


async def test_a_client_that_keeps_up_gets_every_frame_directly(hub: Hub) -> None:
    async with direct_session(hub) as (_, a), direct_session(hub) as (_, b):
        for i in range(50):
            await hub.publish("room", f"m{i}")
        expected = [f"m{i}" for i in range(50)]
        assert await a.wait_sent(50, WAIT) == expected
        assert await b.wait_sent(50, WAIT) == expected
        assert (a.direct, a.awaited, b.direct, b.awaited) == (50, 0, 50, 0)


async def test_every_subscriber_is_handed_the_same_frame_object(hub: Hub) -> None:
    """One encoding per publication: what makes a pre-framed write shareable."""
    async with direct_session(hub) as (_, a), direct_session(hub) as (_, b):
        await hub.publish("room", "shared")
        await a.wait_sent(1, WAIT)
        await b.wait_sent(1, WAIT)
        assert a.sent[0] is b.sent[0]


async def test_a_client_that_stops_reading_gets_the_rest_later_in_order(hub: Hub) -> None:
    async with direct_session(hub) as (session, transport):
        await hub.publish("room", "before")
        transport.block()
        for i in range(10):
            await hub.publish("room", f"m{i}")
        await asyncio.sleep(0)  # let the writer task start and wait on the blocked transport
        assert transport.messages() == ["before"]
        assert session.queued_bytes > 0
        transport.unblock()
        assert await transport.wait_sent(11, WAIT) == ["before", *(f"m{i}" for i in range(10))]
        # Caught up: the next frame goes directly again.
        direct = transport.direct
        await hub.publish("room", "after")
        await transport.wait_sent(12, WAIT)
        assert transport.direct == direct + 1


async def test_a_client_that_stops_reading_is_closed_slow_at_its_limit() -> None:
    settings = HubSettings(allow_anonymous=True, client_queue_max_bytes=1000)
    async with Hub(settings) as hub, direct_session(hub) as (session, transport):
        transport.block()
        for _ in range(30):
            await hub.publish("room", "x" * 100)
        async with asyncio.timeout(WAIT):
            await transport.closed.wait()
        assert session.close_code == DisconnectCode.SLOW


async def test_a_broken_direct_write_closes_only_that_session(hub: Hub) -> None:
    async with direct_session(hub) as (broken, broken_t), direct_session(hub) as (fine, fine_t):
        broken_t.broken = True
        await hub.publish("room", "x")
        assert await fine_t.wait_sent(1, WAIT) == ["x"]
        await asyncio.wait_for(broken.wait_ended(), WAIT)
        assert broken.close_code == DisconnectCode.WRITE_ERROR
        assert not fine.closed


@pytest.mark.parametrize("direct", [True, False])
async def test_pings_run_on_a_timer_not_a_task(direct: bool) -> None:
    """A pinging session costs no task: idle connections hold no coroutine for liveness."""
    settings = HubSettings(allow_anonymous=True, ping_interval=0.3, pong_timeout=0.29)
    async with Hub(settings) as hub:
        transport = FakeDirectTransport() if direct else FakeTransport()
        session = hub.open_session(transport, RawCodec(ping="ping"), user="u")
        session.any_frame_is_pong = True
        tasks_before = len(asyncio.all_tasks())
        session.start_pinging()
        assert len(asyncio.all_tasks()) == tasks_before
        await transport.wait_sent(1, WAIT)
        transport.feed("pong")
        assert await session.receive() == "pong"
        await transport.wait_sent(2, WAIT)
        assert transport.messages()[:2] == ["ping", "ping"]
        session.close()
        await asyncio.wait_for(session.wait_ended(), WAIT)


async def test_a_flood_is_batched_into_few_frames_on_a_direct_transport(hub: Hub) -> None:
    """The first frame of a round goes at once; the rest of the round waits for the flush,
    which batches it (Centrifuge JSON joins messages with newlines)."""
    transport = FakeDirectTransport()
    session = hub.open_session(transport, CentrifugeCodec(), user="u")
    await hub.subscribe(session, "room")
    session.finish_subscribe("room")
    for i in range(40):
        await hub.publish("room", i)  # no pause between: one round
    messages = await transport.wait_sent(40, WAIT)
    assert [orjson.loads(m)["push"]["pub"]["data"] for m in messages] == list(range(40))
    assert len(transport.sent) <= 2
    assert session.queued_bytes == 0  # the batch's bytes left the count with it
    session.close()
    await asyncio.wait_for(session.wait_ended(), WAIT)


async def test_subscribers_flooded_alike_are_handed_the_same_batch_object(hub: Hub) -> None:
    """A round's batch is joined once for every subscriber that queued the same frames, so a
    direct transport frames it once (not once per subscriber)."""
    transports = [FakeDirectTransport() for _ in range(3)]
    sessions = [hub.open_session(t, CentrifugeCodec(), user="u") for t in transports]
    for session in sessions:
        await hub.subscribe(session, "room")
        session.finish_subscribe("room")
    for i in range(5):
        await hub.publish("room", i)  # no pause between: one round
    for transport in transports:
        messages = await transport.wait_sent(5, WAIT)
        assert [orjson.loads(m)["push"]["pub"]["data"] for m in messages] == list(range(5))
    first, *others = (t.sent for t in transports)
    assert len(first) == 2  # the first publication at once, the other four batched
    assert all(sent[1] is first[1] for sent in others)
    for session in sessions:
        session.close()
        await asyncio.wait_for(session.wait_ended(), WAIT)
