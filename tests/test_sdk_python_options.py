"""Namespace and subscribe options (issue 8 §2, §4) driven by centrifuge-python against a live
server: force_positioning / force_recovery / force_push_join_leave, the subscribe flag that turns
an unrecoverable position into error 112, recovery mode ``cache``, tags filters and fossil delta
compression (JSON and Protobuf). Raw frames check the wire form where the SDK hides it.
Every wait is bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import orjson
import pytest
from centrifuge import Client, DeltaType, StreamPosition, SubscriptionState
from centrifuge.filter import Filter
from sdk_events import Events
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

from fastapi_realtime import ChannelOptions, Hub

NAMESPACES = {
    "": ChannelOptions(),
    "plain": ChannelOptions(history_size=10),
    "short": ChannelOptions(history_size=3),
    "forced": ChannelOptions(history_size=10, force_recovery=True),
    "positioned": ChannelOptions(history_size=10, force_positioning=True),
    "room": ChannelOptions(presence=True, join_leave=True, force_push_join_leave=True),
    "state": ChannelOptions(history_size=10, recovery_mode="cache", force_recovery=True),
    "ticks": ChannelOptions(history_size=10, allow_tags_filter=True),
    "delta": ChannelOptions(history_size=10, allowed_delta_types=("fossil",)),
}


def options_hub(**settings: Any) -> Hub:
    return make_hub(namespaces=NAMESPACES, **settings)


async def lose_connection_while(client: Client, events: Events, hub: Hub, missed: Any) -> None:
    """Drop the client's connection, run ``missed()`` (publishing) while it is away, let it back."""
    events.hold_reconnect = asyncio.Event()
    try:
        await _drop_transport(client)
        while (await events.next("connecting")).code != SDK_TRANSPORT_CLOSED:
            pass
        async with asyncio.timeout(WAIT):
            await hub.wait_idle()  # the server saw the connection go
        await missed()
    finally:
        events.hold_reconnect.set()


# -- force_* ------------------------------------------------------------------------------


async def test_force_recovery_recovers_a_subscription_that_did_not_ask() -> None:
    hub = options_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack, token=hs256("alice"))
        _, sub_events = await subscribed(client, "forced:x")  # neither positioned nor recoverable
        first = await sub_events.next("subscribed")
        assert (first.positioned, first.recoverable) == (True, True)
        await hub.publish("forced:x", {"n": 1})
        assert (await take_publications(sub_events, 1))[0].offset == 1

        async def missed() -> None:
            for n in (2, 3, 4):
                await hub.publish("forced:x", {"n": n})

        await lose_connection_while(client, events, hub, missed)
        again = await sub_events.next("subscribed")
        assert (again.was_recovering, again.recovered) == (True, True)
        assert [p.data["n"] for p in await take_publications(sub_events, 3)] == [2, 3, 4]


async def test_without_force_a_plain_subscribe_is_not_positioned() -> None:
    hub = options_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        _, sub_events = await subscribed(client, "plain:x")
        first = await sub_events.next("subscribed")
        assert (first.positioned, first.recoverable) == (False, False)


async def test_force_positioning_positions_without_recovery() -> None:
    hub = options_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        await hub.publish("positioned:x", {"n": 1})
        _, sub_events = await subscribed(client, "positioned:x")
        first = await sub_events.next("subscribed")
        assert (first.positioned, first.recoverable) == (True, False)
        assert first.stream_position.offset == 1


async def test_force_push_join_leave_sends_join_and_leave_unasked() -> None:
    hub = options_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        alice, _ = await connected(url, stack, token=hs256("alice"))
        _, alice_events = await subscribed(alice, "room:1")  # join_leave not asked for
        assert (await alice_events.next("join")).info.user == "alice"  # its own join
        bob, _ = await connected(url, stack, token=hs256("bob"))
        bob_sub, _ = await subscribed(bob, "room:1")
        assert (await alice_events.next("join")).info.user == "bob"
        await bob_sub.unsubscribe()
        assert (await alice_events.next("leave")).info.user == "bob"


# -- flag 2: error 112 instead of recovered: false ------------------------------------------


@pytest.mark.parametrize("use_protobuf", [False, True], ids=["json", "protobuf"])
async def test_reject_unrecovered_flag_answers_112_and_get_state_reloads(use_protobuf: bool) -> None:
    hub = options_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        for n in range(1, 6):  # 5 publications, the last 3 kept
            await hub.publish("short:s", {"n": n})
        top = (await hub.history("short:s", limit=0)).position
        positions = [StreamPosition(offset=1, epoch=top.epoch), StreamPosition(offset=top.offset, epoch=top.epoch)]
        asked: list[str] = []

        async def get_state(channel: str) -> StreamPosition:
            asked.append(channel)
            return positions[len(asked) - 1]

        client, _ = await connected(url, stack, token=hs256("alice"), use_protobuf=use_protobuf)
        _, sub_events = await subscribed(client, "short:s", recoverable=True, get_state=get_state)
        # The first position (offset 1) cannot be recovered from 3..5: the server answered 112,
        # the SDK asked the app for its state again and subscribed from there.
        ctx = await sub_events.next("subscribed")
        assert asked == ["short:s", "short:s"]
        assert (ctx.was_recovering, ctx.recovered) == (True, True)
        assert ctx.stream_position.offset == top.offset


@pytest.mark.parametrize(("flag", "expected"), [(0, "recovered false"), (2, "error 112"), (3, "error 112")])
async def test_reject_unrecovered_flag_on_the_wire(flag: int, expected: str) -> None:
    hub = options_hub(allow_anonymous=True)
    async with serve(hub) as url:
        for n in range(1, 6):
            await hub.publish("short:w", {"n": n})
        async with ProtocolClient.connected(url, answer_pings=True) as client:
            assert "connect" in await client.command("connect", {})
            body = {"channel": "short:w", "recover": True, "recoverable": True, "offset": 1, "flag": flag}
            reply = await client.command("subscribe", body)
            if expected == "error 112":
                assert reply["error"] == {"code": 112, "message": "unrecoverable position"}
                # The subscription is gone: subscribing again works.
                assert "subscribe" in await client.command("subscribe", {"channel": "short:w"})
            else:
                assert reply["subscribe"]["was_recovering"] is True
                assert "recovered" not in reply["subscribe"]


# -- recovery mode cache --------------------------------------------------------------------


async def test_cache_recovery_delivers_only_the_latest_publication() -> None:
    hub = options_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack, token=hs256("alice"))
        _, sub_events = await subscribed(client, "state:board")
        await hub.publish("state:board", {"v": 1})
        assert (await take_publications(sub_events, 1))[0].data == {"v": 1}

        async def missed() -> None:
            for v in (2, 3, 4):
                await hub.publish("state:board", {"v": v})

        await lose_connection_while(client, events, hub, missed)
        await sub_events.next("subscribed")
        again = await sub_events.next("subscribed")
        assert (again.was_recovering, again.recovered) == (True, True)
        latest = await take_publications(sub_events, 1)
        assert [(p.offset, p.data) for p in latest] == [(4, {"v": 4})]
        await hub.publish("state:board", {"v": 5})
        assert (await sub_events.next("publication")).pub.data == {"v": 5}
        assert sub_events.pending("publication") == 0


@pytest.mark.parametrize(
    ("offset", "same_epoch", "expected"),
    [
        pytest.param(0, True, (True, [3]), id="fresh_client_gets_the_latest"),
        pytest.param(1, True, (True, [3]), id="behind_gets_the_latest"),
        pytest.param(3, True, (True, []), id="up_to_date_gets_nothing"),
        pytest.param(3, False, (True, [3]), id="other_epoch_gets_the_latest"),
    ],
)
async def test_cache_recovery_on_the_wire(offset: int, same_epoch: bool, expected: tuple[bool, list[int]]) -> None:
    hub = options_hub(allow_anonymous=True)
    async with serve(hub) as url:
        for v in (1, 2, 3):
            await hub.publish("state:w", {"v": v})
        epoch = (await hub.history("state:w", limit=0)).position.epoch
        async with ProtocolClient.connected(url, answer_pings=True) as client:
            await client.command("connect", {})
            body = {"channel": "state:w", "recover": True, "offset": offset, "epoch": epoch if same_epoch else "x"}
            result = (await client.command("subscribe", body))["subscribe"]
        pubs = [p["offset"] for p in result.get("publications", [])]
        assert (result.get("recovered", False), pubs) == expected
        assert result["offset"] == 3


# -- tags filter ----------------------------------------------------------------------------


@pytest.mark.parametrize("use_protobuf", [False, True], ids=["json", "protobuf"])
async def test_tags_filter_delivers_only_matching_publications(use_protobuf: bool) -> None:
    hub = options_hub()

    def price(pub: Any) -> str:
        data = orjson.loads(pub.data) if use_protobuf else pub.data
        return str(data["p"])

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"), use_protobuf=use_protobuf)
        wanted = Filter.all(Filter.eq("ticker", "AAPL"), Filter.gte("price", "100"))
        _, filtered = await subscribed(client, "ticks:t", tags_filter=wanted, recoverable=True)
        other, _ = await connected(url, stack, token=hs256("bob"))
        _, everything = await subscribed(other, "ticks:t")
        ticks = [("AAPL", "99"), ("MSFT", "300"), ("AAPL", "101"), ("AAPL", "150")]
        for ticker, value in ticks:
            await hub.publish("ticks:t", {"t": ticker, "p": value}, tags={"ticker": ticker, "price": value})
        assert [p.data["p"] for p in await take_publications(everything, 4)] == ["99", "300", "101", "150"]
        got = await take_publications(filtered, 2)
        assert [(price(p), p.offset, p.tags) for p in got] == [
            ("101", 3, {"ticker": "AAPL", "price": "101"}),
            ("150", 4, {"ticker": "AAPL", "price": "150"}),
        ]
        await hub.publish("ticks:t", {"t": "AAPL", "p": "200"}, tags={"ticker": "AAPL", "price": "200"})
        assert (await filtered.next("publication")).pub.offset == 5  # no gap error: offsets skip


@pytest.mark.parametrize(
    ("channel", "tf"),
    [
        pytest.param("plain:t", Filter.eq("a", "b"), id="namespace_without_allow_tags_filter"),
        pytest.param("ticks:t", Filter.gt("a", "not-a-number"), id="invalid_filter"),
        pytest.param("ticks:t", Filter.any(*[Filter.eq("a", str(i)) for i in range(8)]), id="too_many_nodes"),
    ],
)
async def test_refused_tags_filter_is_107(channel: str, tf: Any) -> None:
    hub = options_hub(tags_filter_max_nodes=8)
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        events = Events()
        sub = client.new_subscription(channel, events=events, tags_filter=tf)
        await sub.subscribe()
        ctx = await events.next("unsubscribed")
        assert ctx.code == 107
        assert sub.state == SubscriptionState.UNSUBSCRIBED
        await subscribed(client, "ticks:after")  # the connection goes on


# -- delta compression ----------------------------------------------------------------------


def board(step: int) -> dict[str, Any]:
    """A state payload of a few KB whose one cell changes per step."""
    cells = [{"id": i, "label": f"cell number {i}", "value": i * 3} for i in range(60)]
    cells[step % 60]["value"] = 1000 + step
    return {"step": step, "cells": cells}


@pytest.mark.parametrize("use_protobuf", [False, True], ids=["json", "protobuf"])
async def test_delta_publications_are_applied_by_the_sdk(use_protobuf: bool) -> None:
    hub = options_hub()

    def decode(data: Any) -> Any:
        return orjson.loads(data) if use_protobuf else data

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack, token=hs256("alice"), use_protobuf=use_protobuf)
        _, sub_events = await subscribed(client, "delta:b", delta=DeltaType.FOSSIL, recoverable=True)
        assert not (await sub_events.next("subscribed")).was_recovering
        plain, _ = await connected(url, stack, token=hs256("bob"), use_protobuf=use_protobuf)
        _, plain_events = await subscribed(plain, "delta:b")
        for step in range(5):
            await hub.publish("delta:b", board(step))
        got = await take_publications(sub_events, 5)
        assert [decode(p.data) for p in got] == [board(s) for s in range(5)]
        assert [p.delta for p in got] == [False, True, True, True, True]  # full payload first
        assert [decode(p.data) for p in await take_publications(plain_events, 5)] == [board(s) for s in range(5)]
        await plain.disconnect()  # (lose_connection_while waits for the hub to have no session)

        async def missed() -> None:
            for step in (5, 6):
                await hub.publish("delta:b", board(step))

        await lose_connection_while(client, events, hub, missed)
        again = await sub_events.next("subscribed")
        assert again.recovered
        recovered = await take_publications(sub_events, 2)  # recovered: full payloads
        assert [(decode(p.data), p.delta) for p in recovered] == [(board(5), False), (board(6), False)]
        await hub.publish("delta:b", board(7))
        await hub.publish("delta:b", board(8))
        live = await take_publications(sub_events, 2)
        # The channel had no subscriber on this hub meanwhile, so no delta base: the first live
        # publication is a full payload again, the next a delta.
        assert [(decode(p.data), p.delta) for p in live] == [(board(7), False), (board(8), True)]


async def test_delta_wire_form_json() -> None:
    hub = options_hub(allow_anonymous=True)
    async with serve(hub) as url, ProtocolClient.connected(url, answer_pings=True) as client:
        await client.command("connect", {})
        result = (await client.command("subscribe", {"channel": "delta:w", "delta": "fossil"}))["subscribe"]
        assert result == {"delta": True}
        unasked = (await client.command("subscribe", {"channel": "plain:w", "delta": "fossil"}))["subscribe"]
        assert unasked == {}  # not allowed in that namespace: no delta, as Centrifugo
        await hub.publish("delta:w", board(0))
        await hub.publish("delta:w", board(1))
        first, second = (await client.next_push())["pub"], (await client.next_push())["pub"]
        assert isinstance(first["data"], str) and json.loads(first["data"]) == board(0) and "delta" not in first
        assert second["delta"] is True and len(second["data"]) < len(first["data"]) // 10


async def test_delta_and_tags_filter_together_are_107() -> None:
    hub = make_hub(
        namespaces={"both": ChannelOptions(allow_tags_filter=True, allowed_delta_types=("fossil",))},
        allow_anonymous=True,
    )
    async with serve(hub) as url, ProtocolClient.connected(url, answer_pings=True) as client:
        await client.command("connect", {})
        body = {"channel": "both:x", "delta": "fossil", "tf": {"key": "a", "cmp": "ex"}}
        assert (await client.command("subscribe", body))["error"]["code"] == 107


async def test_payloads_over_delta_max_bytes_go_in_full() -> None:
    hub = options_hub(delta_max_bytes=len(orjson.dumps(board(0))) - 1)
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        _, sub_events = await subscribed(client, "delta:big", delta=DeltaType.FOSSIL)
        for step in range(3):
            await hub.publish("delta:big", board(step))
        small = [{"text": "a payload under the limit " * 4, "n": n} for n in (1, 2)]
        for data in small:
            await hub.publish("delta:big", data)
        got = await take_publications(sub_events, 5)
        assert [p.data for p in got] == [board(0), board(1), board(2), *small]
        # Over the limit: full payloads; the small ones after them: full, then a delta.
        assert [p.delta for p in got] == [False, False, False, False, True]
