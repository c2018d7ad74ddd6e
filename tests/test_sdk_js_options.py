"""Namespace and subscribe options (issue 8 §2, §4) driven by centrifuge-js (5.8) against a live
server: force_recovery, getState with the 112 flag, recovery mode ``cache``, tags filters and
fossil delta compression (JSON and the Protobuf build). Scenarios live in tests/js/scenarios.mjs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from js_harness import run_scenario, scenario
from test_sdk_js import make_hub, numbers, offsets, serve, token

from fastapi_realtime import ChannelOptions, Hub

NAMESPACES = {
    "": ChannelOptions(),
    "short": ChannelOptions(history_size=3),
    "forced": ChannelOptions(history_size=50, force_recovery=True),
    "state": ChannelOptions(history_size=10, recovery_mode="cache", force_recovery=True),
    "ticks": ChannelOptions(history_size=10, allow_tags_filter=True),
    "delta": ChannelOptions(history_size=10, allowed_delta_types=("fossil",)),
}


@pytest.fixture
def hub() -> Hub:
    return make_hub(namespaces=NAMESPACES)


@pytest.fixture
async def url(hub: Hub) -> AsyncIterator[str]:
    async with serve(hub) as endpoint:
        yield endpoint


async def test_force_recovery_recovers_a_plain_subscription(hub: Hub, url: str) -> None:
    channel = "forced:js"
    params = {"token": token(), "channel": channel, "sub_options": {}, "before": 2, "after": 5}
    async with scenario(url, "recovery", params) as js:
        ready = await js.expect("READY")
        assert (ready["subscribed"]["recoverable"], ready["subscribed"]["positioned"]) == (True, True)
        for n in range(2):
            await hub.publish(channel, {"n": n})
        await js.expect("OFFLINE")
        for n in range(2, 6):
            await hub.publish(channel, {"n": n})
        await js.send("GO")
        resub = await js.expect("RESUBSCRIBED")
        assert (resub["subscribed"]["wasRecovering"], resub["subscribed"]["recovered"]) == (True, True)
        await hub.publish(channel, {"n": 6})
        r = await js.finish()
    assert numbers(r["publications"]) == list(range(7))
    assert r["gaps"] == [] and r["duplicates"] == []


async def test_cache_recovery_delivers_only_the_latest_publication(hub: Hub, url: str) -> None:
    channel = "state:js"
    params = {"token": token(), "channel": channel, "sub_options": {}, "before": 1, "after": 2}
    async with scenario(url, "recovery", params) as js:
        await js.expect("READY")
        await hub.publish(channel, {"n": 0})
        await js.expect("OFFLINE")
        for n in range(1, 5):
            await hub.publish(channel, {"n": n})
        await js.send("GO")
        resub = await js.expect("RESUBSCRIBED")
        assert (resub["subscribed"]["wasRecovering"], resub["subscribed"]["recovered"]) == (True, True)
        assert resub["received"] == 2  # the one before, then only the latest
        await hub.publish(channel, {"n": 5})
        r = await js.finish()
    assert numbers(r["publications"]) == [0, 4, 5]
    assert offsets(r["publications"]) == [1, 5, 6]


async def test_get_state_position_that_cannot_be_recovered_is_112_then_reloaded(hub: Hub, url: str) -> None:
    channel = "short:js"
    for n in range(5):  # offsets 1..5, only 3..5 kept
        await hub.publish(channel, {"n": n})
    top = (await hub.history(channel, limit=0)).position
    positions = [{"offset": 1, "epoch": top.epoch}, {"offset": top.offset, "epoch": top.epoch}]
    r = await run_scenario(url, "get_state", {"token": token(), "channel": channel, "positions": positions})
    assert r["get_state_calls"] == 2  # the first position got 112, the SDK asked again
    assert (r["subscribed"]["wasRecovering"], r["subscribed"]["recovered"]) == (True, True)
    assert r["subscribed"]["streamPosition"]["offset"] == top.offset


async def test_tags_filter_delivers_only_matching_publications(hub: Hub, url: str) -> None:
    channel = "ticks:js"
    tf = {
        "op": "and",
        "nodes": [{"key": "ticker", "cmp": "eq", "val": "AAPL"}, {"key": "price", "cmp": "gt", "val": "100"}],
    }
    params = {"token": token(), "channel": channel, "count": 2, "sub_options": {"tagsFilter": tf}}
    async with scenario(url, "subscribe_receive", params) as js:
        await js.expect("READY")
        for n, (ticker, price) in enumerate([("AAPL", "99"), ("MSFT", "500"), ("AAPL", "101"), ("AAPL", "150")]):
            await hub.publish(channel, {"n": n}, tags={"ticker": ticker, "price": price})
        r = await js.finish()
    assert numbers(r["publications"]) == [2, 3]


def board(step: int) -> dict[str, Any]:
    cells = [{"id": i, "label": f"cell number {i}", "value": i * 3} for i in range(60)]
    cells[step % 60]["value"] = 1000 + step
    return {"n": step, "cells": cells}


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_delta_publications_are_applied_by_the_sdk(hub: Hub, url: str, protobuf: bool) -> None:
    channel = "delta:js"
    params = {
        "token": token(),
        "channel": channel,
        "count": 5,
        "sub_options": {"delta": "fossil"},
        "protobuf": protobuf,
    }
    async with scenario(url, "subscribe_receive", params) as js:
        await js.expect("READY")
        for step in range(5):
            await hub.publish(channel, board(step))
        r = await js.finish()
    assert [p["data"] for p in r["publications"]] == [board(step) for step in range(5)]
    stats = r["deltaStats"]
    assert (stats["numFullPayloads"], stats["numDeltaPayloads"]) == (1, 4)
    assert stats["compressionRatio"] > 0.5


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
@pytest.mark.parametrize("kind", ["map", "shared_poll"])
async def test_map_and_shared_poll_subscriptions_are_refused_with_108(url: str, kind: str, protobuf: bool) -> None:
    params = {"token": token(), "channel": "forced:newer", "kind": kind, "protobuf": protobuf}
    r = await run_scenario(url, "newer_type_refused", params)
    assert r["unsubscribed"]["code"] == 108
    assert (r["sub_state"], r["state"]) == ("unsubscribed", "connected")
