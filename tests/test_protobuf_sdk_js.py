"""The Protobuf encoding driven by centrifuge-js's Protobuf build (``centrifuge/build/protobuf``)
over a real uvicorn server: the scenarios of ``tests/js/scenarios.mjs`` with ``protobuf: true``.

Payloads are bytes in this mode; the scenarios decode them back to JSON (``fromBytes``), or
report non-JSON bytes as ``{"hex": ...}``. Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

from typing import Any

import pytest
from js_harness import node_available, run_scenario, scenario
from test_sdk_js import make_hub, numbers, offsets, serve, token

from fastapi_realtime import Hub


@pytest.fixture(autouse=True)
def _node() -> None:
    node_available()


async def test_protobuf_js_client_connects_publishes_and_reads_presence_history_and_rpc() -> None:
    hub: Hub = make_hub()
    channel = "chat:pb-js"
    params: dict[str, Any] = {
        "token": token("alice", info={"name": "Alice"}),
        "channel": channel,
        "rpc_method": "whoami",
        "data": {"from": "js"},
        "binary_hex": "00ff89",
    }
    async with serve(hub) as url, scenario(url, "protobuf_calls", params) as js:
        assert (await js.expect("READY"))["client"]
        assert [s.codec.name for s in hub.sessions_of("alice")] == ["protobuf"]
        await hub.publish(channel, {"n": 1})
        r = await js.finish()
    assert [p["data"] for p in r["publications"]] == [{"n": 1}, {"from": "js"}, {"hex": "00ff89"}]
    assert offsets(r["publications"]) == [1, 2, 3]
    assert r["publications"][1]["info"]["user"] == "alice"
    assert r["presence"] == {"clients": [r["client"]], "user": "alice", "conn_info": {"name": "Alice"}}
    assert r["stats"] == {"numClients": 1, "numUsers": 1}
    assert r["history"] == [
        {"offset": 1, "data": {"n": 1}},
        {"offset": 2, "data": {"from": "js"}},
        {"offset": 3, "data": {"hex": "00ff89"}},
    ]
    assert r["rpc"] == {"user": "alice", "client": r["client"], "method": "whoami", "echo": {"from": "js"}}


async def test_protobuf_js_client_recovers_missed_publications_after_reconnect() -> None:
    hub = make_hub()
    channel = "chat:pb-js-recovery"
    before, missed, live = 2, 5, 1
    params = {"token": token(), "channel": channel, "before": before, "after": missed + live, "protobuf": True}
    async with serve(hub) as url, scenario(url, "recovery", params) as js:
        ready = await js.expect("READY")
        assert ready["subscribed"]["recoverable"] is True
        assert [s.codec.name for s in hub.sessions_of("alice")] == ["protobuf"]
        for n in range(before):
            await hub.publish(channel, {"n": n})
        offline = await js.expect("OFFLINE")
        assert offline["position"]["offset"] == before
        for n in range(before, before + missed):
            await hub.publish(channel, {"n": n})
        await js.send("GO")
        resub = await js.expect("RESUBSCRIBED")
        assert (resub["subscribed"]["wasRecovering"], resub["subscribed"]["recovered"]) == (True, True)
        await hub.publish(channel, {"n": before + missed})
        r = await js.finish()
    total = before + missed + live
    assert numbers(r["publications"]) == list(range(total))
    assert offsets(r["publications"]) == list(range(1, total + 1))
    assert r["gaps"] == [] and r["duplicates"] == []


async def test_protobuf_js_client_answers_pings_and_stays_connected() -> None:
    hub = make_hub(ping_interval=1.0, pong_timeout=0.9)
    async with serve(hub) as url:
        params = {"token": token(), "channel": "chat:pb-idle", "stay_ms": 2500, "protobuf": True}
        r = await run_scenario(url, "idle", params)
    assert r["state"] == "connected" and r["sub_state"] == "subscribed"
