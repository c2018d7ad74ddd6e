"""The hub driven by the official JavaScript SDK (centrifuge-js) over a real uvicorn server.

Each test serves its own hub with :func:`servers.running_server` and runs one scenario of
``tests/js/scenarios.mjs`` in Node through ``tests/js_harness.py``: one-shot scenarios with
:func:`run_scenario`, interactive ones (the test publishes from Python between the scenario's
coordination lines) with :func:`scenario`. Every wait is bounded: the scenario's own waits
(``timeout``, ``overall_timeout``), the harness's line timeouts, and ``WAIT`` on this side.
Nothing is synchronised with sleeps.

Node.js >= 20 and ``npm ci --prefix tests/js`` are required; without them every test fails
(it does not skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import js_harness
import jwt
import pytest
from fastapi import FastAPI
from js_harness import ScenarioFailed, node_available, run_scenario, scenario, websocket_url
from namespaces import CHAT, LOCKED
from servers import running_server

from fastapi_realtime import (
    ChannelOptions,
    Credentials,
    Hub,
    HubSettings,
    JWTAuth,
    RefreshContext,
    ReplyError,
    RPCContext,
)

WAIT = 10.0
"""Upper bound of every wait on the Python side, in seconds."""

SECRET = "fastapi-realtime-js-sdk-secret-0123456789abcdef"
"""HS256 secret (longer than 32 bytes, so PyJWT does not warn about its length)."""

NAMESPACES = {
    "": ChannelOptions(),
    "chat": CHAT,
    "news": ChannelOptions(history_size=10),
    "locked": LOCKED,
}

APP_ERROR = 1001
"""An application error code (400-1999) raised by the ``fail`` RPC handler."""


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _node() -> None:
    """Fail (not skip) every test at once when Node or tests/js/node_modules is missing."""
    node_available()


def make_hub(**settings: Any) -> Hub:
    """A hub with JWT auth, the test namespaces and two RPC handlers (``whoami``, ``fail``)."""
    settings.setdefault("namespaces", NAMESPACES)
    hub = Hub(HubSettings(**settings), auth=JWTAuth(secret=SECRET))

    @hub.rpc("whoami")
    async def whoami(ctx: RPCContext, data: Any) -> Any:
        return {"user": ctx.user, "client": ctx.client, "method": ctx.method, "echo": data}

    @hub.rpc("fail")
    async def fail(ctx: RPCContext, data: Any) -> Any:
        raise ReplyError(APP_ERROR, "refused by the app")

    return hub


@contextlib.asynccontextmanager
async def serve(hub: Hub) -> AsyncIterator[str]:
    """Serve ``hub`` on a real server; yields the SDK's WebSocket URL.

    On a normal exit it also checks that every session of the hub was closed (the scenarios
    disconnect their clients before they exit).
    """
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server(app) as server:
        yield websocket_url(server.host, server.port)
        async with asyncio.timeout(WAIT):
            await hub.wait_idle()


@pytest.fixture
def hub() -> Hub:
    return make_hub()


@pytest.fixture
async def url(hub: Hub) -> AsyncIterator[str]:
    async with serve(hub) as endpoint:
        yield endpoint


def token(sub: str = "alice", *, ttl: float = 3600, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "exp": int(time.time() + ttl), **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def sub_token(sub: str, channel: str, *, ttl: float = 3600) -> str:
    payload = {"sub": sub, "channel": channel, "exp": int(time.time() + ttl)}
    return jwt.encode(payload, SECRET, algorithm="HS256")


def numbers(publications: list[dict[str, Any]]) -> list[int]:
    return [p["data"]["n"] for p in publications]


def offsets(publications: list[dict[str, Any]]) -> list[int]:
    return [p["offset"] for p in publications]


# -- connect and authentication -----------------------------------------------------------


async def test_connect_with_token(url: str) -> None:
    r = await run_scenario(url, "connect_token", {"token": token("alice")})
    assert r["state"] == "connected"
    assert r["connected"]["client"]
    assert r["connected"]["transport"] == "websocket"


async def test_anonymous_connect_refused_with_101_when_not_enabled(url: str) -> None:
    r = await run_scenario(url, "anonymous_refused", {"expect_code": 101})
    assert r["disconnected"] == {"code": 101, "reason": "unauthorized"}
    assert r["state"] == "disconnected"


async def test_anonymous_connect_accepted_when_enabled() -> None:
    hub = make_hub(allow_anonymous=True)
    async with serve(hub) as url:
        r = await run_scenario(url, "connect_token", {})
    assert r["connected"]["client"]


async def test_invalid_token_disconnects_with_3500_and_no_reconnect(url: str) -> None:
    forged = jwt.encode({"sub": "alice"}, "another-secret-of-at-least-32-bytes!!", algorithm="HS256")
    r = await run_scenario(url, "anonymous_refused", {"token": forged, "expect_code": 3500})
    assert r["disconnected"]["code"] == 3500
    assert r["state"] == "disconnected"


# -- subscribe, publish ---------------------------------------------------------------------


async def test_subscribe_and_receive_server_publications_in_order(hub: Hub, url: str) -> None:
    channel = "chat:receive"
    params = {"token": token(), "channel": channel, "count": 5, "sub_options": {"positioned": True}}
    async with scenario(url, "subscribe_receive", params) as js:
        ready = await js.expect("READY")
        assert ready["subscribed"]["channel"] == channel
        assert ready["subscribed"]["wasRecovering"] is False
        for n in range(5):
            await hub.publish(channel, {"n": n}, tags={"kind": "test"})
        r = await js.finish()
    assert numbers(r["publications"]) == [0, 1, 2, 3, 4]
    assert offsets(r["publications"]) == [1, 2, 3, 4, 5]
    assert all(p["tags"] == {"kind": "test"} for p in r["publications"])
    assert r["gaps"] == [] and r["duplicates"] == []


async def test_private_channel_with_subscription_token(hub: Hub, url: str) -> None:
    channel = "$chat:secret"
    params = {"token": token("alice"), "channel": channel, "sub_options": {"token": sub_token("alice", channel)}}
    async with scenario(url, "subscribe_receive", params) as js:
        await js.expect("READY")
        await hub.publish(channel, {"n": 1})
        r = await js.finish()
    assert numbers(r["publications"]) == [1]


async def test_client_publish_allowed_reaches_subscribers_with_publisher_info(hub: Hub, url: str) -> None:
    channel = "chat:publish"
    r = await run_scenario(url, "publish_allowed", {"token": token("alice"), "channel": channel, "data": {"x": 1}})
    assert r["published"] is True
    assert r["echo"]["data"] == {"x": 1}
    assert r["echo"]["info"]["user"] == "alice"
    assert r["echo"]["info"]["client"] == r["client"]
    history = await hub.history(channel, limit=10)
    assert [p.data for p in history.publications] == [b'{"x":1}']
    assert history.publications[0].info is not None and history.publications[0].info.user == "alice"


async def test_client_publish_refused_with_103(hub: Hub, url: str) -> None:
    r = await run_scenario(url, "publish_refused", {"token": token(), "channel": "news:refused"})
    assert r["published"] is False
    assert r["error"]["code"] == 103
    history = await hub.history("news:refused", limit=10)
    assert history.publications == []


@pytest.mark.parametrize(
    ("channel", "why"),
    [("locked:x", "namespace without allow_subscribe"), ("$chat:x", "private, no token"), ("chat:x#bob", "bob only")],
)
async def test_subscribe_permission_denied_with_103(url: str, channel: str, why: str) -> None:
    r = await run_scenario(url, "permission_denied", {"token": token("alice"), "channel": channel})
    assert r["unsubscribed"]["code"] == 103, why
    assert r["sub_state"] == "unsubscribed"
    assert r["state"] == "connected"


async def test_invalid_subscription_token_is_103_and_the_connection_stays(url: str) -> None:
    r = await run_scenario(
        url, "permission_denied", {"token": token("alice"), "channel": "$chat:x", "sub_options": {"token": "not-a-jwt"}}
    )
    assert r["unsubscribed"]["code"] == 103
    assert r["state"] == "connected"


async def test_subscribe_unknown_channel_with_102(url: str) -> None:
    r = await run_scenario(url, "unknown_channel", {"token": token(), "channel": "nope:x"})
    assert r["unsubscribed"]["code"] == 102
    assert r["state"] == "connected"


# -- presence, join and leave ------------------------------------------------------------


@pytest.mark.parametrize("leave_by", ["unsubscribe", "disconnect"])
async def test_presence_and_join_leave(hub: Hub, url: str, leave_by: str) -> None:
    channel = f"chat:presence-{leave_by}"
    r = await run_scenario(
        url,
        "presence_join_leave",
        {
            "token": token("alice", info={"name": "Alice"}),
            "token2": token("bob", info={"name": "Bob"}),
            "channel": channel,
            "leave_by": leave_by,
        },
    )
    a, b = r["a_client"], r["b_client"]
    assert r["join"] == {"client": b, "user": "bob", "connInfo": {"name": "Bob"}}
    assert r["leave"]["client"] == b and r["leave"]["user"] == "bob"
    own_join = {"client": a, "user": "alice", "connInfo": {"name": "Alice"}}  # as Centrifugo: A sees its own join
    assert r["joins"] == [own_join, r["join"]] and r["leaves"] == [r["leave"]]

    before = r["presence_before"]["clients"]
    assert set(before) == {a, b}
    assert (before[a]["client"], before[a]["user"], before[a]["connInfo"]) == (a, "alice", {"name": "Alice"})
    assert (before[b]["client"], before[b]["user"], before[b]["connInfo"]) == (b, "bob", {"name": "Bob"})
    assert r["stats_before"] == {"numClients": 2, "numUsers": 2}
    assert set(r["presence_after"]["clients"]) == {a}
    assert r["stats_after"] == {"numClients": 1, "numUsers": 1}

    async with asyncio.timeout(WAIT):
        await hub.wait_idle()
    assert await hub.presence(channel) == {}


# -- history ------------------------------------------------------------------------------


async def test_history_limit_since_reverse_and_wrong_epoch(hub: Hub, url: str) -> None:
    channel = "chat:history"
    for n in range(5):
        top = await hub.publish(channel, {"n": n})
    r = await run_scenario(
        url,
        "history",
        {
            "token": token(),
            "channel": channel,
            "sub_options": {"recoverable": True, "positioned": True},
            "queries": [
                {"limit": 10},
                {"limit": -1},
                {"limit": 2},
                {"limit": 2, "reverse": True},
                {"limit": 10, "since": {"offset": 3, "epoch": "$epoch"}},
                {"limit": 1, "since": {"offset": 3, "epoch": "$epoch"}},
                {"limit": 10, "since": {"offset": 5, "epoch": "$epoch"}},
                {"limit": 10, "since": {"offset": 3, "epoch": "wrong"}},
                {"limit": 0},
            ],
        },
    )
    assert r["subscribed"]["streamPosition"] == {"offset": 5, "epoch": top.epoch}
    all10, all_, first2, newest2, after3, after3_one, after5, wrong_epoch, position = r["results"]
    assert numbers(all10["publications"]) == [0, 1, 2, 3, 4]
    assert offsets(all10["publications"]) == [1, 2, 3, 4, 5]
    assert (all10["offset"], all10["epoch"]) == (5, top.epoch)
    assert numbers(all_["publications"]) == [0, 1, 2, 3, 4]
    assert numbers(first2["publications"]) == [0, 1]
    assert numbers(newest2["publications"]) == [4, 3]
    assert offsets(after3["publications"]) == [4, 5]
    assert offsets(after3_one["publications"]) == [4]
    assert after5["publications"] == [] and after5["offset"] == 5
    assert wrong_epoch["error"]["code"] == 112
    assert position["publications"] == [] and (position["offset"], position["epoch"]) == (5, top.epoch)


async def test_history_reverse_since_pages_backwards(hub: Hub, url: str) -> None:
    channel = "chat:history-back"
    for n in range(5):
        await hub.publish(channel, {"n": n})
    r = await run_scenario(
        url,
        "history",
        {
            "token": token(),
            "channel": channel,
            "queries": [{"limit": 2, "reverse": True, "since": {"offset": 4, "epoch": "$epoch"}}],
        },
    )
    (page,) = r["results"]
    assert offsets(page["publications"]) == [3, 2]


# -- RPC ----------------------------------------------------------------------------------


async def test_rpc_to_python_handler_and_errors(url: str) -> None:
    r = await run_scenario(
        url,
        "rpc",
        {
            "token": token("alice"),
            "calls": [
                {"method": "whoami", "data": {"a": [1, 2]}},
                {"method": "whoami"},
                {"method": "nope", "data": {}},
                {"method": "fail", "data": {}},
            ],
        },
    )
    echo, no_data, unknown, app_error = r["results"]
    assert echo["data"] == {"user": "alice", "client": r["client"], "method": "whoami", "echo": {"a": [1, 2]}}
    assert no_data["data"]["echo"] is None
    assert unknown["error"]["code"] == 104
    assert app_error["error"] == {"code": APP_ERROR, "message": "refused by the app"}


# -- token expiry and refresh -------------------------------------------------------------


async def test_token_refresh_keeps_the_client_connected_past_expiry() -> None:
    hub = make_hub(expired_close_delay=0.5)
    refreshed: list[Credentials | None] = []

    @hub.on_refresh
    async def on_refresh(ctx: RefreshContext) -> Credentials | None:
        refreshed.append(ctx.credentials)
        return None  # keep what the token says

    short = token("alice", ttl=2)
    expires_at = jwt.decode(short, SECRET, algorithms=["HS256"])["exp"]
    async with serve(hub) as url:
        r = await run_scenario(
            url,
            "token_refresh",
            {
                "token": short,
                "refresh_tokens": [token("alice", ttl=3600)],
                # Past the short token's expiry plus the close delay, with a margin.
                "stay_ms": 3500,
                "channel": "chat:refresh",
                "probe_rpc": "whoami",
                "probe_data": 1,
            },
        )
    assert time.time() > expires_at + 0.5
    assert r["connected_after"] is True
    assert r["get_token_calls"] == 1
    assert len(r["connected_events"]) == 1
    assert r["disconnected_events"] == [] and r["connecting_events"] == [] and r["errors"] == []
    assert r["subscription_state"] == "subscribed" and r["subscribed_events"] == 1
    assert r["probe"]["data"]["user"] == "alice" and r["probe"]["data"]["client"] == r["client"]
    assert len(refreshed) == 1
    assert refreshed[0] is not None and refreshed[0].user == "alice"
    assert refreshed[0].expire_at > time.time() + 3000


async def test_refresh_with_another_users_token_disconnects_with_3500(url: str) -> None:
    params = {"token": token("alice", ttl=2), "refresh_tokens": [token("mallory")], "stay_ms": 3000}
    with pytest.raises(ScenarioFailed, match="not connected after") as info:
        await run_scenario(url, "token_refresh", params)
    assert info.value.output is not None
    disconnected = [e["ctx"] for e in info.value.output["events"] if e["event"] == "disconnected"]
    assert [d["code"] for d in disconnected] == [3500]


async def test_expired_token_at_connect_gets_109_then_connects_with_a_fresh_one(url: str) -> None:
    r = await run_scenario(
        url,
        "token_refresh",
        {"token": token("alice", ttl=-60), "refresh_tokens": [token("alice")], "stay_ms": 0, "probe_rpc": "whoami"},
    )
    assert [(e["type"], e["error"]["code"]) for e in r["errors"]] == [("connect", 109)]
    assert r["connected_after"] is True
    assert r["get_token_calls"] == 1
    assert len(r["connected_events"]) == 1
    assert r["probe"]["data"]["user"] == "alice"


# -- recovery -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["drop", "disconnect"])
async def test_offline_client_recovers_every_missed_publication_in_order(hub: Hub, url: str, mode: str) -> None:
    channel = f"chat:recovery-{mode}"
    before, missed, live = 3, 20, 2
    params = {"token": token(), "channel": channel, "before": before, "after": missed + live, "offline_mode": mode}
    async with scenario(url, "recovery", params) as js:
        ready = await js.expect("READY")
        assert ready["subscribed"]["recoverable"] is True
        for n in range(before):
            await hub.publish(channel, {"n": n})
        offline = await js.expect("OFFLINE")
        assert offline["received"] == before
        assert offline["position"]["offset"] == before
        for n in range(before, before + missed):
            await hub.publish(channel, {"n": n})
        await js.send("GO")
        resub = await js.expect("RESUBSCRIBED")
        assert resub["subscribed"]["wasRecovering"] is True
        assert resub["subscribed"]["recovered"] is True
        assert resub["received"] == before + missed  # delivered with the subscribe reply
        for n in range(before + missed, before + missed + live):
            await hub.publish(channel, {"n": n})
        r = await js.finish()
    total = before + missed + live
    assert numbers(r["publications"]) == list(range(total))
    assert offsets(r["publications"]) == list(range(1, total + 1))
    assert r["gaps"] == [] and r["duplicates"] == []
    assert r["received_before_offline"] == before
    assert r["client_before"] != r["client_after"]


# -- liveness -----------------------------------------------------------------------------


async def test_client_answers_server_pings_and_stays_connected() -> None:
    hub = make_hub(ping_interval=1.0, pong_timeout=0.9)
    async with serve(hub) as url:
        r = await run_scenario(url, "idle", {"token": token(), "channel": "chat:idle", "stay_ms": 2500})
    assert r["state"] == "connected" and r["sub_state"] == "subscribed"


# -- the harness itself fails loudly ------------------------------------------------------


def test_missing_node_modules_fails_the_test(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(js_harness, "JS_DIR", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="npm ci --prefix tests/js"):
        node_available()


async def test_scenario_timeout_is_reported_with_the_sdk_events(url: str) -> None:
    params = {"token": token(), "channel": "chat:silent", "count": 1, "timeout": 300}
    with pytest.raises(ScenarioFailed, match="timeout after 300 ms") as info:
        await run_scenario(url, "subscribe_receive", params)
    assert info.value.output is not None and info.value.output["ok"] is False
    assert "last SDK events" in str(info.value)


async def test_scenario_exiting_early_is_reported_and_the_process_is_gone(url: str) -> None:
    async with scenario(url, "connect_token", {"token": "garbage"}) as js:
        with pytest.raises(ScenarioFailed, match="finished before printing 'READY'"):
            await js.expect("READY")
    assert js.output is not None and js.output["ok"] is False
    with pytest.raises(ProcessLookupError):
        os.kill(js.pid, 0)
