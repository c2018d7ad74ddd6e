"""Limits next to ``max_connections`` (per user, per IP, connect rate per IP, presence members per
channel) and the command-flood rule, each hit by a test."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from fakes import FakeProtocolClient, FakeTransport
from fastapi import FastAPI
from servers import running_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from wsclient import JSON, ProtocolClient

from fastapi_realtime import ChannelOptions, DisconnectCode, Hub, HubSettings, JWTAuth
from fastapi_realtime.limits import IPLimits
from fastapi_realtime.protocol.codecs import RawCodec
from fastapi_realtime.protocol.errors import Disconnect
from fastapi_realtime.ratelimit import RefusalWindow

SECRET = "fastapi-realtime-limits-secret-0123456789abcdef"
NAMESPACES = {"": ChannelOptions(), "chat": ChannelOptions(presence=True)}
WAIT = 5.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_hub(**settings: Any) -> Hub:
    settings.setdefault("namespaces", NAMESPACES)
    return Hub(HubSettings(allow_anonymous=True, **settings), auth=JWTAuth(secret=SECRET))


def user_token(user: str) -> str:
    return jwt.encode({"sub": user}, SECRET, algorithm="HS256")


async def closed_with(client: FakeProtocolClient) -> int:
    async with asyncio.timeout(WAIT):
        await client.transport.closed.wait()
    assert client.transport.closed_with is not None
    return client.transport.closed_with[0]


# -- command flood ------------------------------------------------------------------------


async def test_a_sustained_flood_is_disconnected_with_3013_although_commands_get_through() -> None:
    # 100 commands/s allowed; the client sends two per token: every other one is accepted, so
    # refusals never come many "in a row", yet they persist: the 21st within 10 s closes it.
    clock = FakeClock()
    hub = make_hub(
        client_command_rate=100.0,
        client_command_burst=2,
        client_command_refusals=20,
        client_command_refusals_window=10.0,
    )
    async with hub, FakeProtocolClient(hub, clock=clock) as client:
        assert "error" not in await client.command("connect", {})
        outcomes = []
        while not client.session.closed:
            clock.now += 0.01  # one token comes back
            client.send({"ping": {}}, {"ping": {}})
            for _ in range(2):
                if client.session.closed:
                    break
                outcomes.append("error" in await client.message())
        assert await closed_with(client) == DisconnectCode.TOO_MANY_REQUESTS
        assert outcomes.count(True) == 20  # 20 refusals answered with 111, the 21st closed it
        assert outcomes.count(False) >= 20  # and commands went through all along


async def test_refusals_spread_over_more_than_the_window_are_only_refused() -> None:
    clock = FakeClock()
    hub = make_hub(client_command_rate=0.001, client_command_burst=1, client_command_refusals=3)
    async with hub, FakeProtocolClient(hub, clock=clock) as client:
        assert "error" not in await client.command("connect", {})  # the only token
        for _ in range(4):
            for _ in range(3):  # three refusals: at the limit, not over it
                assert (await client.command("ping", {}))["error"]["code"] == 111
            clock.now += 10.0  # the window closes; tokens are still out (0.01 per 10 s)
        assert not client.session.closed


def test_refusal_window_counts_per_window_not_in_a_row() -> None:
    clock = FakeClock()
    window = RefusalWindow(limit=2, window=1.0, clock=clock)
    assert not window.refuse() and not window.refuse()
    clock.now += 0.99
    assert window.refuse()  # the third within one second
    clock.now += 0.02  # a new window opens at the next refusal
    assert not window.refuse() and not window.refuse()


# -- connections per user -----------------------------------------------------------------


async def test_connections_per_user_over_the_limit_close_with_3504_at_connect() -> None:
    async with make_hub(max_connections_per_user=2) as hub, contextlib.AsyncExitStack() as stack:
        for _ in range(2):
            client = await stack.enter_async_context(FakeProtocolClient(hub))
            assert "error" not in await client.command("connect", {"token": user_token("alice")})
        third = await stack.enter_async_context(FakeProtocolClient(hub))
        third.send({"connect": {"token": user_token("alice")}})
        assert await closed_with(third) == DisconnectCode.CONNECTION_LIMIT
        bob = await stack.enter_async_context(FakeProtocolClient(hub))  # other users are not affected
        assert "error" not in await bob.command("connect", {"token": user_token("bob")})
        for _ in range(3):  # nor anonymous connections (they have no user to count)
            anonymous = await stack.enter_async_context(FakeProtocolClient(hub))
            assert "error" not in await anonymous.command("connect", {})
        with pytest.raises(Disconnect) as refused:  # the tutorial API names its user up front
            hub.open_session(FakeTransport(), RawCodec(), user="alice")
        assert refused.value.code == DisconnectCode.CONNECTION_LIMIT


# -- presence members per channel ---------------------------------------------------------


async def test_subscribing_to_a_channel_with_a_full_presence_is_106() -> None:
    async with make_hub(presence_max_clients=2) as hub, contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(3):
            client = await stack.enter_async_context(FakeProtocolClient(hub))
            assert "error" not in await client.command("connect", {})
            clients.append(client)
        for client in clients[:2]:
            assert "error" not in await client.command("subscribe", {"channel": "chat:full"})
        reply = await clients[2].command("subscribe", {"channel": "chat:full"})
        assert reply["error"] == {"code": 106, "message": "presence limit exceeded"}
        assert not clients[2].session.closed
        assert "error" not in await clients[2].command("subscribe", {"channel": "no-presence"})
        assert await clients[0].command("unsubscribe", {"channel": "chat:full"})
        assert "error" not in await clients[2].command("subscribe", {"channel": "chat:full"})  # room again
        assert (await hub.presence_stats("chat:full"))[0] == 2


# -- per client IP, over a real server ----------------------------------------------------


@contextlib.asynccontextmanager
async def served(hub: Hub) -> AsyncIterator[str]:
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server(app) as server:
        yield server.ws_url + "/connection/websocket"


async def close_code_of_next_connection(url: str) -> int:
    async with connect(url, subprotocols=[JSON], open_timeout=WAIT) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT):
                await ws.recv()
    frame = closed.value.rcvd
    assert frame is not None
    return frame.code


async def test_connections_per_ip_over_the_limit_close_with_3504() -> None:
    hub = make_hub(max_connections_per_ip=2)
    gone = asyncio.Event()

    async def session_gone(session: object) -> None:
        gone.set()

    async with served(hub) as url:
        first, second = await ProtocolClient.open(url), await ProtocolClient.open(url)
        assert await close_code_of_next_connection(url) == DisconnectCode.CONNECTION_LIMIT
        hub.on_session_closed.append(session_gone)
        await first.close()
        async with asyncio.timeout(WAIT):
            await gone.wait()  # the server let the first one go
        third = await ProtocolClient.open(url)  # a free slot again
        await asyncio.gather(second.close(), third.close())


async def test_connecting_faster_than_the_rate_per_ip_closes_with_3013() -> None:
    hub = make_hub(connect_rate_per_ip=0.001, connect_burst_per_ip=3)
    async with served(hub) as url:
        clients = [await ProtocolClient.open(url) for _ in range(3)]
        for client in clients:
            await client.close()
        assert await close_code_of_next_connection(url) == DisconnectCode.TOO_MANY_REQUESTS


def test_ip_limits_forget_idle_ips_after_their_bucket_refilled() -> None:
    clock = FakeClock()
    limits = IPLimits(HubSettings(connect_rate_per_ip=10.0, connect_burst_per_ip=10), clock)
    for n in range(50):
        limits.admit(f"10.0.0.{n}")
        limits.release(f"10.0.0.{n}")
    limits.admit("10.0.1.1")  # stays connected
    assert len(limits) == 51
    clock.now += 1.0  # the 10-token buckets are full again after 1 s
    limits.admit("10.0.1.2")
    assert len(limits) == 2  # the connected IP and the newcomer
