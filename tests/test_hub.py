"""Hub and session behaviour, driven through in-memory transports (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from fakes import FakeTransport

from fastapi_realtime import (
    ChannelOptions,
    DisconnectCode,
    ErrorCode,
    FeatureNotEnabled,
    Hub,
    HubSettings,
    ReplyError,
    StreamPosition,
)
from fastapi_realtime.protocol.codecs import CentrifugeCodec, RawCodec
from fastapi_realtime.session import Frame, Session


@asynccontextmanager
async def open_session(hub: Hub, *, user: str = "u", raw: bool = False) -> AsyncIterator[tuple[Session, FakeTransport]]:
    """A served session on ``hub`` whose handler reads and drops every frame (so it sees the
    peer leave); on exit it is closed and detached."""
    transport = FakeTransport()
    session = hub.open_session(transport, RawCodec() if raw else CentrifugeCodec(), user=user)

    async def read_all() -> None:
        while True:
            await session.receive()

    runner = asyncio.create_task(hub.serve(session, read_all))
    try:
        yield session, transport
    finally:
        session.close()
        await asyncio.wait_for(runner, 5)


async def join(hub: Hub, session: Session, channel: str, **kwargs: bool) -> None:
    await hub.subscribe(session, channel, **kwargs)
    session.finish_subscribe(channel)


def pushes(transport: FakeTransport) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(m)["push"] for m in transport.messages()]


async def test_two_hubs_in_one_process_share_nothing() -> None:
    async with Hub() as a, Hub() as b, open_session(a) as (session, transport):
        await join(a, session, "room")
        await b.publish("room", "for b only")
        await a.publish("room", "for a")
        await transport.wait_sent(1)
        assert [p["pub"]["data"] for p in pushes(transport)] == ["for a"]
        assert b.channels() == [] and a.channels() == ["room"]


async def test_publish_reaches_every_subscriber_in_order(hub: Hub) -> None:
    async with open_session(hub) as (s1, t1), open_session(hub) as (s2, t2):
        await join(hub, s1, "chat:lobby")
        await join(hub, s2, "chat:lobby")
        for i in range(50):
            await hub.publish("chat:lobby", {"i": i})
        for transport in (t1, t2):
            await transport.wait_sent(50)
            assert [p["pub"]["data"]["i"] for p in pushes(transport)] == list(range(50))
            assert [p["pub"]["offset"] for p in pushes(transport)] == list(range(1, 51))


async def test_a_publication_is_encoded_once_per_channel(hub: Hub) -> None:
    async with open_session(hub) as (s1, t1), open_session(hub) as (s2, t2):
        await join(hub, s1, "room")
        await join(hub, s2, "room")
        await hub.publish("room", {"x": 1})
        await t1.wait_sent(1)
        await t2.wait_sent(1)
        assert t1.sent[0] is t2.sent[0]


async def test_queued_messages_are_batched_into_one_frame(hub: Hub) -> None:
    async with open_session(hub) as (session, transport):
        await join(hub, session, "room")
        transport.block()
        for i in range(10):
            await hub.publish("room", i)
        transport.unblock()
        await transport.wait_sent(10)
        assert len(transport.sent) <= 2  # at most the first, sent before the block bit, plus one batch
        assert [p["pub"]["data"] for p in pushes(transport)] == list(range(10))


async def test_raw_sessions_get_one_payload_per_frame(hub: Hub) -> None:
    async with open_session(hub, raw=True) as (session, transport):
        await join(hub, session, "room")
        transport.block()
        await hub.publish("room", "hello")
        await hub.publish("room", {"a": 1})
        transport.unblock()
        await transport.wait_sent(2)
        assert transport.sent == ["hello", '{"a":1}']


async def test_overflowing_queue_disconnects_only_the_slow_client() -> None:
    settings = HubSettings(client_queue_max_bytes=2000, namespaces={"": ChannelOptions()})
    async with Hub(settings) as hub:
        async with open_session(hub) as (slow, slow_t), open_session(hub) as (fast, fast_t):
            await join(hub, slow, "room")
            await join(hub, fast, "room")
            slow_t.block()
            for i in range(100):
                await hub.publish("room", {"i": i, "pad": "x" * 50})
                await fast_t.wait_sent(i + 1)  # the fast client keeps up
            await asyncio.wait_for(slow_t.closed.wait(), 5)
            assert slow_t.closed_with is not None and slow_t.closed_with[0] == DisconnectCode.SLOW == 3008
            assert slow.queued_bytes == 0
            assert not fast.closed
        await hub.wait_idle()
        assert hub.stats == {"sessions": 0, "users": 0, "channels": 0, "subscriptions": 0}


async def test_disconnect_removes_the_client_from_channels_and_presence(hub: Hub) -> None:
    async with open_session(hub, user="alice") as (session, transport):
        await join(hub, session, "chat:lobby")
        assert set(await hub.presence("chat:lobby")) == {session.id}
        transport.hang_up()
        await hub.wait_idle()
    assert await hub.presence("chat:lobby") == {}
    assert hub.stats["subscriptions"] == 0 and hub.channels() == []
    assert hub.broker.stats["subscribed_channels"] == 0  # type: ignore[attr-defined]


async def test_history_offsets_and_epoch(hub: Hub) -> None:
    first = await hub.publish("news:a", "one")
    second = await hub.publish("news:a", "two")
    assert (first.offset, second.offset) == (1, 2) and first.epoch == second.epoch
    result = await hub.history("news:a")
    assert [(p.offset, p.data) for p in result.publications] == [(1, "one"), (2, "two")]
    assert result.position == second
    since = await hub.history("news:a", since=StreamPosition(1, first.epoch))
    assert [p.offset for p in since.publications] == [2]
    with pytest.raises(ReplyError) as wrong_epoch:
        await hub.history("news:a", since=StreamPosition(1, "another-epoch"))
    assert wrong_epoch.value.code == ErrorCode.UNRECOVERABLE_POSITION


async def test_history_size_is_kept_per_namespace(hub: Hub) -> None:
    for i in range(15):
        await hub.publish("news:b", i)
    result = await hub.history("news:b", reverse=True, limit=3)
    assert [p.data for p in result.publications] == [14, 13, 12]
    assert len((await hub.history("news:b")).publications) == 10


async def test_channels_without_history_have_no_offsets(hub: Hub) -> None:
    assert await hub.publish("plain", "x") == StreamPosition(0, "")
    with pytest.raises(FeatureNotEnabled, match=r"history_size=N.* namespace ''"):
        await hub.history("plain")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("", ErrorCode.BAD_REQUEST),
        ("has space", ErrorCode.BAD_REQUEST),
        ("x" * 256, ErrorCode.BAD_REQUEST),
        ("ünïcode", ErrorCode.BAD_REQUEST),
        ("nope:room", ErrorCode.UNKNOWN_CHANNEL),
    ],
)
async def test_invalid_channel_names_are_refused(hub: Hub, name: str, code: ErrorCode) -> None:
    with pytest.raises(ReplyError) as exc:
        await hub.publish(name, "x")
    assert exc.value.code == code
    async with open_session(hub) as (session, _):
        with pytest.raises(ReplyError):
            await hub.subscribe(session, name)
        assert session.subscriptions == {}


async def test_presence_and_stats_count_clients_and_users(hub: Hub) -> None:
    async with open_session(hub, user="a") as (s1, _), open_session(hub, user="a") as (s2, _):
        async with open_session(hub, user="b") as (s3, _):
            for s in (s1, s2, s3):
                await join(hub, s, "chat:r")
            presence = await hub.presence("chat:r")
            assert {cid: info.user for cid, info in presence.items()} == {s1.id: "a", s2.id: "a", s3.id: "b"}
            assert await hub.presence_stats("chat:r") == (3, 2)
        await hub.unsubscribe(s2, "chat:r")
        assert await hub.presence_stats("chat:r") == (1, 1)


async def test_presence_off_raises_feature_not_enabled_saying_what_to_configure(hub: Hub) -> None:
    for call in (hub.presence, hub.presence_stats):
        with pytest.raises(FeatureNotEnabled, match=r"presence=True.* namespace ''"):
            await call("plain")


async def test_join_and_leave_reach_subscribers_that_asked(hub: Hub) -> None:
    async with open_session(hub, user="watcher") as (watcher, wt), open_session(hub, user="other") as (quiet, qt):
        await join(hub, watcher, "chat:r", join_leave=True)
        await join(hub, quiet, "chat:r")
        async with open_session(hub, user="newcomer") as (newcomer, _):
            await join(hub, newcomer, "chat:r")
            await wt.wait_sent(2)
        await wt.wait_sent(3)
        events = [(kind, p[kind]["info"]["user"]) for p in pushes(wt) for kind in ("join", "leave") if kind in p]
        assert events == [("join", "other"), ("join", "newcomer"), ("leave", "newcomer")]
        assert all("join" not in p or p["join"]["info"]["user"] != "newcomer" for p in pushes(qt))


async def test_subscribing_twice_and_over_the_channel_limit_is_refused() -> None:
    settings = HubSettings(client_channel_limit=2, namespaces={"": ChannelOptions()})
    async with Hub(settings) as hub, open_session(hub) as (session, _):
        await join(hub, session, "a")
        with pytest.raises(ReplyError) as twice:
            await hub.subscribe(session, "a")
        assert twice.value.code == ErrorCode.ALREADY_SUBSCRIBED
        await join(hub, session, "b")
        with pytest.raises(ReplyError) as limit:
            await hub.subscribe(session, "c")
        assert limit.value.code == ErrorCode.LIMIT_EXCEEDED


async def test_disconnect_user_closes_all_their_sessions(hub: Hub) -> None:
    async with open_session(hub, user="bad") as (_, t1), open_session(hub, user="bad") as (_, t2):
        async with open_session(hub, user="good") as (good, _):
            await hub.disconnect("bad")
            for t in (t1, t2):
                await asyncio.wait_for(t.closed.wait(), 5)
                assert t.closed_with == (3503, "force disconnect")
            assert not good.closed


async def test_unsubscribe_user_sends_an_unsubscribe_push(hub: Hub) -> None:
    async with open_session(hub, user="alice") as (session, transport):
        await join(hub, session, "room")
        await hub.unsubscribe_user("alice", "room")
        await transport.wait_sent(1)
        assert pushes(transport) == [{"channel": "room", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}]
        await hub.publish("room", "after")
        assert "room" not in session.subscriptions


async def test_nothing_of_a_channel_follows_its_server_unsubscribe_push(hub: Hub) -> None:
    async with open_session(hub) as (session, transport):
        await join(hub, session, "room")
        await join(hub, session, "marker")
        hub.server_unsubscribe(session, "room")  # the broker part of it runs later, in a task
        await hub.publish("room", "after")
        await hub.publish("marker", "end")
        await transport.wait_sent(2)
        unsubscribed, marker = pushes(transport)
        assert unsubscribed == {"channel": "room", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
        assert (marker["channel"], marker["pub"]["data"]) == ("marker", "end")


async def test_a_server_unsubscribe_of_a_closed_session_leaves_its_channels_to_the_detach(hub: Hub) -> None:
    transport = FakeTransport()
    session = hub.open_session(transport, CentrifugeCodec(), user="u")
    runner = asyncio.create_task(hub.serve(session, session.receive))
    await join(hub, session, "room")
    session.close()
    hub.server_unsubscribe(session, "room")
    await asyncio.wait_for(runner, 5)
    assert hub.channels() == []


async def test_broadcast_reaches_every_connection(hub: Hub) -> None:
    async with open_session(hub) as (_, t1), open_session(hub, raw=True) as (_, t2):
        await hub.broadcast({"notice": "maintenance"})
        await t1.wait_sent(1)
        await t2.wait_sent(1)
        assert pushes(t1) == [{"message": {"data": {"notice": "maintenance"}}}]
        assert t2.sent == ['{"notice":"maintenance"}']


async def test_publications_during_subscribe_come_after_the_reply(hub: Hub) -> None:
    async with open_session(hub) as (session, transport):
        await hub.subscribe(session, "room")
        await hub.publish("room", "early")
        session.enqueue('{"id":1,"subscribe":{}}')
        session.finish_subscribe("room")
        messages = await transport.wait_sent(2)
        assert messages[0] == '{"id":1,"subscribe":{}}'
        assert orjson.loads(messages[1])["push"]["pub"]["data"] == "early"


async def test_a_gap_in_a_positioned_stream_unsubscribes_with_insufficient_state(hub: Hub) -> None:
    async with open_session(hub) as (session, transport):
        await hub.subscribe(session, "news:x", positioned=True)
        session.subscriptions["news:x"].offset = 5  # the client believes it is at 5; the stream is at 0
        session.finish_subscribe("news:x")
        await hub.publish("news:x", "1")
        await asyncio.wait_for(transport.closed.wait(), 5)
        assert transport.closed_with is not None and transport.closed_with[0] == DisconnectCode.INSUFFICIENT_STATE


async def test_closing_the_hub_tells_every_client_shutdown() -> None:
    hub = Hub()
    await hub.start()
    transports = []
    runners = []
    for _ in range(3):
        t = FakeTransport()
        s = hub.open_session(t, CentrifugeCodec())
        runners.append(asyncio.create_task(hub.serve(s)))
        transports.append(t)
    await hub.close()
    await asyncio.wait_for(asyncio.gather(*runners), 5)
    assert [t.closed_with for t in transports] == [(3001, "shutdown")] * 3


async def test_connection_limit() -> None:
    settings = HubSettings(max_connections=1)
    async with Hub(settings) as hub, open_session(hub):
        with pytest.raises(Exception) as exc:
            hub.open_session(FakeTransport(), CentrifugeCodec())
        assert getattr(exc.value, "code", None) == DisconnectCode.CONNECTION_LIMIT


async def test_a_failing_connection_task_closes_the_session_with_internal_error(hub: Hub) -> None:
    async def boom() -> None:
        raise RuntimeError("boom")

    async with open_session(hub) as (session, transport):
        session.start_task(boom())
        await asyncio.wait_for(transport.closed.wait(), 5)
        assert transport.closed_with is not None and transport.closed_with[0] == 3004


async def test_a_dead_client_is_dropped_after_the_pong_timeout() -> None:
    settings = HubSettings(ping_interval=0.05, pong_timeout=0.04)
    async with Hub(settings) as hub, open_session(hub) as (session, transport):
        session.start_pinging()
        await asyncio.wait_for(transport.closed.wait(), 5)
        assert transport.closed_with == (3012, "no pong")
        assert "{}" in transport.messages()


async def test_publications_held_during_a_slow_subscribe_are_bounded_by_the_queue_limit() -> None:
    settings = HubSettings(client_queue_max_bytes=1000, namespaces={"": ChannelOptions()})
    async with Hub(settings) as hub, open_session(hub) as (session, transport):
        await hub.subscribe(session, "room")  # the subscribe reply is not sent yet: publications wait
        for i in range(30):
            await hub.publish("room", {"i": i, "pad": "x" * 40})
        await asyncio.wait_for(transport.closed.wait(), 5)
        assert transport.closed_with is not None
        assert transport.closed_with[0] == DisconnectCode.SLOW


async def test_remove_history_keeps_the_position_so_recovery_is_refused(hub: Hub) -> None:
    await hub.publish("news:r", "one")
    top = await hub.publish("news:r", "two")
    await hub.remove_history("news:r")
    result = await hub.history("news:r")
    assert result.publications == []
    assert result.position == top
    with pytest.raises(FeatureNotEnabled):
        await hub.remove_history("plain")


async def test_a_session_that_has_not_authenticated_gets_no_broadcasts_or_server_subscriptions(hub: Hub) -> None:
    transport = FakeTransport()
    session = hub.open_session(transport, CentrifugeCodec(), user=None)
    runner = asyncio.create_task(hub.serve(session))
    async with open_session(hub, user="") as (_, anonymous):
        await hub.broadcast("hello")
        await hub.subscribe_user("", "room")
        await anonymous.wait_sent(1)
        assert transport.sent == []
        assert session.subscriptions == {}
        hub.set_user(session, "")
        await hub.broadcast("again")
        await transport.wait_sent(1)
    session.close()
    await asyncio.wait_for(runner, 5)


@pytest.mark.parametrize(("publish_slice", "yields_during_burst"), [(0.0, True), (3600.0, False)])
async def test_a_publish_burst_yields_to_other_tasks_after_the_publish_slice(
    publish_slice: float, yields_during_burst: bool
) -> None:
    settings = HubSettings(publish_slice=publish_slice, namespaces={"": ChannelOptions()})
    async with Hub(settings) as hub:
        other_ran = asyncio.Event()
        asyncio.get_running_loop().call_soon(other_ran.set)
        ran_during_burst = False
        for i in range(20):
            await hub.publish("room", i)
            ran_during_burst = ran_during_burst or other_ran.is_set()
        assert ran_during_burst is yields_during_burst


async def test_a_failing_flush_closes_only_that_session(
    hub: Hub, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_session(hub) as (broken, broken_t), open_session(hub) as (fine, fine_t):
        await join(hub, broken, "room")
        await join(hub, fine, "room")
        next_frame = Session._next_frame

        def explode(session: Session) -> Frame:
            if session is broken:
                raise RuntimeError("bug")
            return next_frame(session)

        monkeypatch.setattr(Session, "_next_frame", explode)
        await hub.publish("room", "x")
        await fine_t.wait_sent(1)
        await asyncio.wait_for(broken_t.closed.wait(), 5)
        assert broken_t.closed_with is not None
        assert broken_t.closed_with[0] == DisconnectCode.INTERNAL
        assert not fine.closed
    assert "flushing session" in caplog.text


async def test_a_presence_refresh_skips_a_session_that_left_while_it_ran(hub: Hub) -> None:
    """The refresh awaits the broker per entry: one who unsubscribes meanwhile is not re-added."""
    async with open_session(hub) as (first, _), open_session(hub) as (second, _):
        await join(hub, first, "chat:room")
        await join(hub, second, "chat:room")
        add_presence = hub.broker.add_presence
        calls = 0

        async def add_then_let_the_second_leave(channel: str, info: Any, ttl: float) -> None:
            nonlocal calls
            calls += 1
            await add_presence(channel, info, ttl)
            if calls == 1:
                await hub.unsubscribe(second, "chat:room")

        hub.broker.add_presence = add_then_let_the_second_leave  # type: ignore[method-assign]
        await hub.refresh_presence()
        assert list(await hub.presence("chat:room")) == [first.id]
