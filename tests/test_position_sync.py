"""Position sync: a positioned subscription that missed publications is found and recovers.

A broker's fan-out is at most once (Redis Pub/Sub loses what is published while a node's
subscriber connection is down, and tells no one). A gap followed by another publication is
seen on delivery; a lost *tail* is seen only by comparing positions with the stream top, which
the hub does every ``position_check_interval`` and right after the broker reconnects. These
tests run on the in-memory broker and make publications go missing (or arrive late) through a
relay between the broker and the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from fakes import FakeTransport
from test_sdk_python import connected, serve, subscribed, take_publications

from fastapi_realtime import ChannelOptions, Hub, HubSettings
from fastapi_realtime.brokers.base import BrokerEvents, BrokerUnavailable, HistoryResult, PublishOptions
from fastapi_realtime.brokers.memory import MemoryBroker
from fastapi_realtime.client import ClientHandler
from fastapi_realtime.protocol.codecs import CentrifugeCodec
from fastapi_realtime.protocol.messages import ClientInfo, Publication, StreamPosition
from fastapi_realtime.session import Session

WAIT = 5.0
INSUFFICIENT_STATE = {"push": {"channel": "news:a", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}}


class Relay:
    """Stands between a broker and its hub: can drop publications, or hold them back until
    the next stream-top read (a publication in flight while the top was read)."""

    def __init__(self, hub: BrokerEvents) -> None:
        self.hub = hub
        self.drop = False
        self.hold = False
        self.held: list[tuple[str, Publication]] = []

    def on_publication(self, channel: str, pub: Publication) -> None:
        if self.drop:
            return
        if self.hold:
            self.held.append((channel, pub))
            return
        self.hub.on_publication(channel, pub)

    def release(self) -> None:
        held, self.held, self.hold = self.held, [], False
        for channel, pub in held:
            self.hub.on_publication(channel, pub)

    def on_join(self, channel: str, info: ClientInfo) -> None:
        self.hub.on_join(channel, info)

    def on_leave(self, channel: str, info: ClientInfo) -> None:
        self.hub.on_leave(channel, info)

    def on_control(self, data: bytes) -> None:
        self.hub.on_control(data)


class LossyBroker(MemoryBroker):
    """A memory broker whose fan-out goes through a :class:`Relay`; held publications arrive
    right after the next stream-top read."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.relay: Relay | None = None

    async def start(self, events: BrokerEvents) -> None:
        self.relay = Relay(events)
        await super().start(self.relay)

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int | None, reverse: bool, meta_ttl: float
    ) -> HistoryResult:
        result = await super().history(channel, since=since, limit=limit, reverse=reverse, meta_ttl=meta_ttl)
        if limit == 0 and self.relay is not None and self.relay.hold:
            asyncio.get_running_loop().call_soon(self.relay.release)
        return result


def settings(**overrides: Any) -> HubSettings:
    overrides.setdefault("position_check_interval", 0)
    overrides.setdefault("position_check_grace", 0.05)
    return HubSettings(allow_anonymous=True, namespaces={"news": ChannelOptions(history_size=10)}, **overrides)


@contextlib.asynccontextmanager
async def positioned_client(hub: Hub) -> AsyncIterator[tuple[Session, FakeTransport]]:
    """A protocol client subscribed to ``news:a`` with ``positioned``, its first publication delivered."""
    transport, codec = FakeTransport(), CentrifugeCodec()
    session = hub.open_session(transport, codec, user=None)
    runner = asyncio.create_task(hub.serve(session, ClientHandler(hub, session, codec).serve))
    transport.feed('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"news:a","positioned":true}}')
    await transport.wait_sent(2)
    await hub.publish("news:a", "one")
    await transport.wait_sent(3)
    try:
        yield session, transport
    finally:
        session.close()
        await asyncio.wait_for(runner, WAIT)


def relay(hub: Hub) -> Relay:
    assert isinstance(hub.broker, LossyBroker) and hub.broker.relay is not None
    return hub.broker.relay


async def test_a_lost_tail_is_found_and_the_client_told_to_recover(caplog: pytest.LogCaptureFixture) -> None:
    async with Hub(settings(), broker=LossyBroker()) as hub, positioned_client(hub) as (session, transport):
        relay(hub).drop = True
        await hub.publish("news:a", "two")  # saved in history, never delivered: no later publication reveals it
        assert await hub.check_positions() == 1
        messages = [orjson.loads(m) for m in await transport.wait_sent(4)]
        assert messages[3] == INSUFFICIENT_STATE
        assert "news:a" not in session.subscriptions and not session.closed
    lines = [r for r in caplog.records if r.name == "fastapi_realtime.hub"]
    assert [r.levelno for r in lines] == [logging.WARNING] and lines[0].exc_info is None
    assert "1 subscriptions in 1 channels missed publications" in lines[0].getMessage()


async def test_a_publication_in_flight_while_the_top_is_read_is_not_a_gap() -> None:
    async with Hub(settings(), broker=LossyBroker()) as hub, positioned_client(hub) as (session, transport):
        relay(hub).hold = True
        await hub.publish("news:a", "two")  # the stream top is 2; the hub has seen 1 so far
        assert await hub.check_positions() == 0
        messages = [orjson.loads(m) for m in await transport.wait_sent(4)]
        assert messages[3]["push"]["pub"]["data"] == "two"
        assert session.subscriptions["news:a"].offset == 2


async def test_a_lost_stream_makes_its_subscriptions_recover() -> None:
    now = [0.0]
    broker = LossyBroker(clock=lambda: now[0])
    async with Hub(settings(history_meta_ttl=60), broker=broker) as hub, positioned_client(hub) as (_, transport):
        now[0] += 61  # the stream's meta expired: it starts again under a new epoch, at offset 0
        assert await hub.check_positions() == 1
        assert orjson.loads((await transport.wait_sent(4))[3]) == INSUFFICIENT_STATE


async def test_the_periodic_check_finds_a_lost_tail_without_being_asked() -> None:
    async with Hub(settings(position_check_interval=0.05), broker=LossyBroker()) as hub:
        async with positioned_client(hub) as (_, transport):
            relay(hub).drop = True
            await hub.publish("news:a", "two")
            assert orjson.loads((await transport.wait_sent(4))[3]) == INSUFFICIENT_STATE


async def test_broker_state_is_visible_and_a_reconnect_triggers_a_check() -> None:
    states: list[bool] = []
    async with Hub(settings(), broker=LossyBroker()) as hub, positioned_client(hub) as (_, transport):
        hub.on_broker_state_changed.append(states.append)
        assert hub.broker_healthy
        hub.on_broker_state(False)  # as a broker does when its Redis connection drops
        assert not hub.broker_healthy
        relay(hub).drop = True
        await hub.publish("news:a", "lost while the subscriber connection was down")
        hub.on_broker_state(True)
        assert hub.broker_healthy
        assert orjson.loads((await transport.wait_sent(4))[3]) == INSUFFICIENT_STATE
        assert states == [False, True]


async def test_the_sdk_recovers_what_was_lost_without_a_later_publication() -> None:
    hub = Hub(settings(position_check_interval=0.1), broker=LossyBroker())
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack)
        _, events = await subscribed(client, "news:a", recoverable=True, positioned=True)
        await hub.publish("news:a", 1)
        relay(hub).drop = True
        await hub.publish("news:a", 2)
        await hub.publish("news:a", 3)
        relay(hub).drop = False
        # The SDK is unsubscribed with 2500, resubscribes from offset 1 and recovers 2 and 3.
        pubs = await take_publications(events, 3)
        assert [(p.offset, p.data) for p in pubs] == [(1, 1), (2, 2), (3, 3)]
        subscribed_again = (await events.next("subscribed"), await events.next("subscribed"))[1]
        assert subscribed_again.recovered and subscribed_again.was_recovering


def test_position_check_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="position_check_interval"):
        HubSettings(position_check_interval=-1)
    with pytest.raises(ValueError, match="position_check_grace"):
        HubSettings(position_check_grace=0)


class DownBroker(MemoryBroker):
    """A memory broker whose backend goes down while ``down``: publishing, history and
    presence calls fail as a Redis broker's do."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def _check(self) -> None:
        if self.down:
            raise BrokerUnavailable("redis://127.0.0.1:1 did not answer within 0.5s")

    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> StreamPosition:
        self._check()
        return await super().publish(channel, pub, opts)

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int | None, reverse: bool, meta_ttl: float
    ) -> HistoryResult:
        self._check()
        return await super().history(channel, since=since, limit=limit, reverse=reverse, meta_ttl=meta_ttl)

    async def add_presence(self, channel: str, info: ClientInfo, ttl: float) -> None:
        self._check()
        await super().add_presence(channel, info, ttl)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        self._check()
        await super().remove_presence(channel, client_id)


async def test_a_client_publishing_while_the_broker_is_down_gets_error_100(caplog: pytest.LogCaptureFixture) -> None:
    hub_settings = HubSettings(allow_anonymous=True, namespaces={"chat": ChannelOptions(allow_publish=True)})
    async with Hub(hub_settings, broker=DownBroker()) as hub:
        transport, codec = FakeTransport(), CentrifugeCodec()
        session = hub.open_session(transport, codec, user=None)
        runner = asyncio.create_task(hub.serve(session, ClientHandler(hub, session, codec).serve))
        transport.feed('{"id":1,"connect":{}}\n{"id":2,"publish":{"channel":"chat:a","data":{}}}')
        reply = orjson.loads((await transport.wait_sent(2))[1])
        assert reply == {"id": 2, "error": {"code": 100, "message": "internal", "temporary": True}}
        assert not session.closed  # the client may retry; nothing else is affected
        session.close()
        await asyncio.wait_for(runner, WAIT)
        with pytest.raises(BrokerUnavailable):
            await hub.publish("chat:a", {})
    lines = [r for r in caplog.records if r.name.startswith("fastapi_realtime")]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "redis://127.0.0.1:1 did not answer" in lines[0].getMessage()


def hub_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    records = [r for r in caplog.records if r.name.startswith("fastapi_realtime")]
    assert all(r.exc_info is None and r.levelno == logging.WARNING for r in records)
    return records


async def test_background_checks_log_one_line_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    broker = DownBroker()
    broker.down = False
    async with Hub(settings(), broker=broker) as hub, positioned_client(hub):
        broker.down = True
        for _ in range(3):
            assert await hub.check_positions() == 0  # nothing read, nothing decided
        assert len(hub_lines(caplog)) == 1
        broker.down = False
        assert await hub.check_positions() == 0
        broker.down = True
        assert await hub.check_positions() == 0
        lines = hub_lines(caplog)
        assert len(lines) == 2
        assert lines[1].getMessage().startswith("position check of 1 of 1 channels failed: redis://127.0.0.1:1")
        broker.down = False


async def test_leaving_while_the_broker_is_down_still_leaves(caplog: pytest.LogCaptureFixture) -> None:
    broker = DownBroker()
    broker.down = False
    hub_settings = HubSettings(allow_anonymous=True, namespaces={"chat": ChannelOptions(presence=True)})
    async with Hub(hub_settings, broker=broker) as hub:
        session = hub.open_session(FakeTransport(), CentrifugeCodec(), user="u")
        runner = asyncio.create_task(hub.serve(session))
        await hub.subscribe(session, "chat:a")
        broker.down = True
        await hub.unsubscribe(session, "chat:a")  # the presence entry will expire by itself
        assert hub.channels() == [] and session.subscriptions == {}
        [line] = hub_lines(caplog)
        assert "removing session" in line.getMessage() and "did not answer" in line.getMessage()
        session.close()
        await asyncio.wait_for(runner, WAIT)


async def test_a_failing_broker_state_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[bool] = []

    def broken(up: bool) -> None:
        raise RuntimeError("probe exporter down")

    async with Hub(settings()) as hub:
        hub.on_broker_state_changed += [broken, seen.append]
        hub.on_broker_state(False)
        assert seen == [False] and not hub.broker_healthy
        hub.on_broker_state(True)
        assert seen == [False, True] and hub.broker_healthy
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and "on_broker_state_changed callback failed" in errors[0].getMessage()
