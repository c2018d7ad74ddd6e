"""The unidirectional WebSocket endpoint: plain WebSocket clients that only listen."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import jwt
import orjson
import pytest
from fastapi import FastAPI
from servers import RunningServer, running_server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from fastapi_realtime import ChannelOptions, Credentials, Hub, HubSettings, JWTAuth, RefreshContext

SECRET = "uni-websocket-tests-secret-of-enough-length"
PATH = "/connection/uni_websocket"


def token(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET, algorithm="HS256")


def make_hub(**settings: Any) -> Hub:
    namespaces = {"": ChannelOptions(), "news": ChannelOptions(history_size=10)}
    return Hub(HubSettings(namespaces=namespaces, **settings), auth=JWTAuth(secret=SECRET))


@pytest.fixture
async def server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Hub, RunningServer]]:
    hub: Hub = getattr(request, "param", None) or make_hub()
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path=PATH))
    async with running_server(app) as srv:
        yield hub, srv


async def next_json(ws: ClientConnection) -> dict[str, Any]:
    """The next message that is not a ping."""
    async with asyncio.timeout(5):
        while True:
            msg: dict[str, Any] = orjson.loads(await ws.recv())
            if msg:
                return msg


def without_time(push: dict[str, Any]) -> dict[str, Any]:
    """A pub push without its server timestamp, for exact comparisons."""
    push["pub"].pop("time", None)
    return push


async def close_code(ws: ClientConnection) -> tuple[int, list[dict[str, Any]]]:
    """Read until the server closes; return its close code and the messages before it."""
    seen = []
    async with asyncio.timeout(5):
        try:
            while True:
                seen.append(orjson.loads(await ws.recv()))
        except ConnectionClosed as closed:
            return (closed.rcvd.code if closed.rcvd else 1006), seen


async def test_connect_push_server_side_subscriptions_and_unwrapped_publications(server: Any) -> None:
    hub, srv = server
    async with connect(srv.ws_url + PATH) as ws:
        await ws.send(orjson.dumps({"token": token("alice", channels=["news:a", "plain"])}).decode())
        connected = await next_json(ws)
        assert set(connected) == {"connect"}
        assert connected["connect"]["client"]
        assert "pong" not in connected["connect"]
        subs = connected["connect"]["subs"]
        assert set(subs) == {"news:a", "plain"}
        assert subs["news:a"]["positioned"] is True
        assert subs["news:a"]["recoverable"] is True
        await hub.publish("news:a", {"n": 1})
        await hub.publish("plain", "two")
        assert without_time(await next_json(ws)) == {"channel": "news:a", "pub": {"data": {"n": 1}, "offset": 1}}
        assert (await next_json(ws))["pub"]["data"] == "two"


async def test_connect_request_in_the_url(server: Any) -> None:
    hub, srv = server
    query = urllib.parse.quote(orjson.dumps({"token": token("bob", channels=["plain"])}).decode())
    async with connect(f"{srv.ws_url}{PATH}?cf_connect={query}") as ws:
        assert "connect" in await next_json(ws)
        await hub.publish("plain", 1)
        assert without_time(await next_json(ws)) == {"channel": "plain", "pub": {"data": 1}}


async def test_server_disconnect_sends_a_disconnect_push_before_the_close_frame(server: Any) -> None:
    hub, srv = server
    async with connect(srv.ws_url + PATH) as ws:
        await ws.send(orjson.dumps({"token": token("carol")}).decode())
        await next_json(ws)
        await hub.disconnect("carol")
        code, seen = await close_code(ws)
    assert code == 3503
    assert seen[-1] == {"disconnect": {"code": 3503, "reason": "force disconnect"}}


async def test_subscribe_user_sends_an_unwrapped_subscribe_push(server: Any) -> None:
    hub, srv = server
    async with connect(srv.ws_url + PATH) as ws:
        await ws.send(orjson.dumps({"token": token("dave")}).decode())
        await next_json(ws)
        await hub.subscribe_user("dave", "news:late")
        push = await next_json(ws)
        assert push["channel"] == "news:late"
        assert push["subscribe"]["positioned"] is True
        await hub.publish("news:late", "x")
        assert without_time(await next_json(ws)) == {"channel": "news:late", "pub": {"data": "x", "offset": 1}}


@pytest.mark.parametrize(
    ("first_message", "code"),
    [
        ("not json", 3501),
        ("[1, 2]", 3501),
        ('{"token": 5}', 3501),
        ("{}", 3500),  # anonymous connections are not allowed here
        ('{"token": "forged"}', 3500),
    ],
)
async def test_a_bad_connect_request_is_closed_with_a_code(server: Any, first_message: str, code: int) -> None:
    _, srv = server
    async with connect(srv.ws_url + PATH) as ws:
        await ws.send(first_message)
        got, _ = await close_code(ws)
    assert got == code


async def test_an_expired_token_is_closed_with_3005_so_the_client_comes_back_with_a_new_one(server: Any) -> None:
    _, srv = server
    async with connect(srv.ws_url + PATH) as ws:
        await ws.send(orjson.dumps({"token": token("erin", exp=int(time.time()) - 10)}).decode())
        got, _ = await close_code(ws)
    assert got == 3005


async def test_server_side_refresh_extends_the_connection_with_a_refresh_push() -> None:
    hub = make_hub(expired_close_delay=0.1)
    refreshed = asyncio.Event()

    @hub.on_refresh
    async def on_refresh(ctx: RefreshContext) -> Credentials:
        refreshed.set()
        return Credentials(user=ctx.user, expire_at=int(time.time()) + 60)

    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path=PATH))
    async with running_server(app) as srv, connect(srv.ws_url + PATH) as ws:
        await ws.send(orjson.dumps({"token": token("frank", exp=int(time.time()) + 1)}).decode())
        connected = await next_json(ws)
        assert "expires" not in connected["connect"]  # the client cannot refresh; the server does
        refresh = await next_json(ws)
        assert refreshed.is_set()
        assert refresh["refresh"]["expires"] is True
        assert 50 <= refresh["refresh"]["ttl"] <= 60


async def test_without_on_refresh_the_connection_expires_with_3005() -> None:
    hub = make_hub()
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path=PATH))
    async with running_server(app) as srv, connect(srv.ws_url + PATH) as ws:
        await ws.send(orjson.dumps({"token": token("gina", exp=int(time.time()) + 1)}).decode())
        await next_json(ws)
        code, seen = await close_code(ws)
    assert code == 3005
    assert seen[-1] == {"disconnect": {"code": 3005, "reason": "connection expired"}}


async def test_pings_need_no_answer() -> None:
    hub = make_hub(ping_interval=0.1, pong_timeout=0.05)
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path=PATH))
    async with running_server(app) as srv, connect(srv.ws_url + PATH) as ws:
        await ws.send(orjson.dumps({"token": token("hank", channels=["plain"])}).decode())
        await next_json(ws)
        pings = 0
        async with asyncio.timeout(5):
            while pings < 3:  # three pings, never answered, and the connection is still open
                pings += orjson.loads(await ws.recv()) == {}
        await hub.publish("plain", "still here")
        assert (await next_json(ws))["pub"]["data"] == "still here"
