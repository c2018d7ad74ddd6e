"""What the server does to a connection on its own initiative, over a real uvicorn server.

- ``hub.subscribe_user``: a server-side subscription, seen by centrifuge-python's client-level
  handlers, on the wire as a ``subscribe`` push, and by tutorial-API connections as plain payloads;
- server-side refresh: a connection made without a token whose ``on_connect`` credentials
  expire is extended by ``on_refresh``, or closed with 3005 when it returns ``None``;
- stale connections: no successful ``connect`` within ``client_stale_close_delay`` closes 3502.

Every wait is bounded by ``asyncio.timeout``; nothing sleeps to synchronise. Where a test needs
to know that the hub subscribed a connection that cannot say so itself, the broker tells.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import jwt
from centrifuge import Client, ClientState
from fastapi import FastAPI, WebSocket
from sdk_events import SDK_CONNECT_CALLED, Events
from servers import running_server
from websockets.asyncio.client import connect
from wsclient import ProtocolClient

from fastapi_realtime import (
    ChannelOptions,
    ConnectContext,
    ConnectReply,
    Credentials,
    HistoryResult,
    Hub,
    HubSettings,
    JWTAuth,
    MemoryBroker,
    RefreshContext,
    RPCContext,
    StreamPosition,
)

WAIT = 5.0
"""Upper bound of every single wait, in seconds."""

SECRET = "fastapi-realtime-test-secret-0123456789abcdef"
"""HS256 secret (longer than 32 bytes, so PyJWT does not warn about its length)."""

NAMESPACES = {
    "": ChannelOptions(),
    "news": ChannelOptions(history_size=10),
}
CLOCK_SLACK = 0.05
"""Seconds allowed between the server's loop clock and this test's wall clock."""


# -- helpers ------------------------------------------------------------------------------


class ObservedBroker(MemoryBroker):
    """A memory broker that reports when the hub subscribes it to a channel, and can hold the
    history read a positioned subscribe makes, so a test publishes while the subscribe is under way."""

    def __init__(self) -> None:
        super().__init__()
        self.subscribed: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.history_read: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.hold_history: dict[str, asyncio.Event] = {}

    async def subscribe(self, channel: str) -> None:
        await super().subscribe(channel)
        self.subscribed[channel].set()

    async def history(
        self, channel: str, *, since: StreamPosition | None, limit: int | None, reverse: bool, meta_ttl: float
    ) -> HistoryResult:
        result = await super().history(channel, since=since, limit=limit, reverse=reverse, meta_ttl=meta_ttl)
        self.history_read[channel].set()
        gate = self.hold_history.get(channel)
        if gate is not None:
            await gate.wait()
        return result


def make_hub(*, broker: MemoryBroker | None = None, **settings: Any) -> Hub:
    settings.setdefault("namespaces", NAMESPACES)
    return Hub(HubSettings(**settings), broker=broker, auth=JWTAuth(secret=SECRET))


def hs256(sub: str) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


@contextlib.asynccontextmanager
async def serve(hub: Hub, app: FastAPI | None = None) -> AsyncIterator[str]:
    """Serve ``hub`` (its protocol endpoint plus the routes of ``app``) on a real server.

    Yields the server's ``ws://`` base URL; on a normal exit also checks that every session closed.
    """
    if app is None:
        app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server(app) as server:
        yield server.ws_url
        async with asyncio.timeout(WAIT):
            await hub.wait_idle()


@contextlib.asynccontextmanager
async def sdk_client(url: str, **options: Any) -> AsyncIterator[tuple[Client, Events]]:
    """A connected centrifuge-python client and its recorded client-level events."""
    events = Events()
    client = Client(f"{url}/connection/websocket", events=events, proxy=None, timeout=WAIT, **options)
    try:
        await client.connect()
        await client.ready(timeout=WAIT)
        yield client, events
    finally:
        await client.disconnect()


def wire(url: str) -> contextlib.AbstractAsyncContextManager[ProtocolClient]:
    """A raw Centrifuge JSON client on the protocol endpoint (it does not answer pings)."""
    return ProtocolClient.connected(f"{url}/connection/websocket", timeout=WAIT)


# -- hub.subscribe_user -------------------------------------------------------------------


async def test_subscribe_user_gives_the_sdk_client_a_server_side_subscription() -> None:
    hub = make_hub()
    async with (
        serve(hub) as url,
        sdk_client(url, token=hs256("alice")) as (alice, alice_events),
        sdk_client(url, token=hs256("bob")) as (_, bob_events),
    ):
        await hub.subscribe_user("alice", "lobby")
        ctx = await alice_events.next("subscribed")
        assert ctx.channel == "lobby"
        assert (ctx.positioned, ctx.recoverable, ctx.stream_position) == (False, False, None)
        assert alice.subscriptions() == {}  # server-side: no client-side Subscription object

        await hub.publish("lobby", {"text": "hi"})
        pub_ctx = await alice_events.next("publication")
        assert (pub_ctx.channel, pub_ctx.pub.data) == ("lobby", {"text": "hi"})
        assert bob_events.of("subscribed") == bob_events.of("publication") == []


async def test_subscribe_user_to_a_history_channel_is_positioned_and_recoverable() -> None:
    hub = make_hub()
    channel = "news:alerts"
    async with serve(hub) as url, sdk_client(url, token=hs256("alice")) as (_, events):
        for n in (1, 2):
            await hub.publish(channel, {"n": n})
        top = (await hub.history(channel)).position
        assert top.offset == 2

        await hub.subscribe_user("alice", channel)
        ctx = await events.next("subscribed")
        assert ctx.channel == channel
        assert (ctx.positioned, ctx.recoverable) == (True, True)
        assert (ctx.stream_position.offset, ctx.stream_position.epoch) == (2, top.epoch)
        assert (ctx.was_recovering, ctx.recovered) == (False, False)

        await hub.publish(channel, {"n": 3})
        pub_ctx = await events.next("publication")
        assert (pub_ctx.channel, pub_ctx.pub.data, pub_ctx.pub.offset) == (channel, {"n": 3}, 3)
        assert len(events.of("publication")) == 1  # the two older publications were not replayed


async def test_subscribe_user_sends_the_exact_subscribe_push_on_the_wire() -> None:
    hub = make_hub(ping_interval=0)
    async with serve(hub) as url, wire(url) as client:
        reply = await client.request({"id": 1, "connect": {"token": hs256("alice")}})
        assert reply["id"] == 1

        await hub.subscribe_user("alice", "lobby")
        assert await client.message() == {"push": {"channel": "lobby", "subscribe": {}}}

        position = await hub.publish("news:feed", {"n": 1})
        await hub.subscribe_user("alice", "news:feed")
        assert await client.message() == {
            "push": {
                "channel": "news:feed",
                "subscribe": {"positioned": True, "recoverable": True, "epoch": position.epoch, "offset": 1},
            }
        }


async def test_subscribe_push_arrives_before_publications_made_during_the_subscribe() -> None:
    broker = ObservedBroker()
    hub = make_hub(broker=broker, ping_interval=0)
    channel = "news:race"
    async with serve(hub) as url, wire(url) as client:
        assert (await client.request({"id": 1, "connect": {"token": hs256("alice")}}))["id"] == 1
        before = await hub.publish(channel, {"n": 1})

        # Hold the subscribe after it read the stream position (offset 1): the connection is
        # already in the channel, so publications made now must wait for the subscribe push.
        release = broker.hold_history[channel] = asyncio.Event()
        await hub.subscribe_user("alice", channel)
        async with asyncio.timeout(WAIT):
            await broker.history_read[channel].wait()
        during = [await hub.publish(channel, {"n": n}) for n in (2, 3)]
        release.set()

        push = await client.message()
        assert push == {
            "push": {
                "channel": channel,
                "subscribe": {"positioned": True, "recoverable": True, "epoch": before.epoch, "offset": 1},
            }
        }
        pubs = [(await client.message())["push"] for _ in during]
        assert [(p["channel"], p["pub"]["data"], p["pub"]["offset"]) for p in pubs] == [
            (channel, {"n": 2}, 2),
            (channel, {"n": 3}, 3),
        ]
        assert [p.offset for p in during] == [2, 3]


async def test_subscribe_user_delivers_plain_payloads_to_a_tutorial_api_connection() -> None:
    broker = ObservedBroker()
    hub = make_hub(broker=broker)
    app = FastAPI(lifespan=hub.lifespan)

    @app.websocket("/ws/{user}")
    async def endpoint(websocket: WebSocket, user: str) -> None:
        async with hub.connection(websocket, user=user) as conn:
            await conn.send_text("ready")
            async for _ in conn.iter_text():
                pass

    async with serve(hub, app) as url, connect(f"{url}/ws/alice", open_timeout=WAIT) as ws:
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "ready"  # the session exists: subscribe_user can find it
        await hub.subscribe_user("alice", "lobby")
        async with asyncio.timeout(WAIT):
            await broker.subscribed["lobby"].wait()  # the hub put the connection in the channel

        await hub.publish("lobby", "plain text")
        await hub.publish("lobby", {"json": [1, 2]})
        async with asyncio.timeout(WAIT):
            assert [await ws.recv() for _ in range(2)] == ["plain text", '{"json":[1,2]}']


# -- server-side refresh ------------------------------------------------------------------


def tokenless_hub(expire_in: int, refresh: Any) -> tuple[Hub, int]:
    """A hub whose ``on_connect`` makes any connection user alice, expiring ``expire_in``
    seconds from now, and whose ``on_refresh`` is ``refresh``."""
    hub = make_hub(ping_interval=0)
    expire_at = int(time.time()) + expire_in

    @hub.on_connect
    async def on_connect(ctx: ConnectContext) -> ConnectReply:
        assert ctx.credentials is None  # no token
        return ConnectReply(Credentials(user="alice", expire_at=expire_at))

    hub.on_refresh(refresh)

    @hub.rpc("whoami")
    async def whoami(ctx: RPCContext, data: Any) -> Any:
        return {"user": ctx.user}

    return hub, expire_at


async def test_on_refresh_extends_a_tokenless_connection_past_its_expiry() -> None:
    refreshed = asyncio.Event()
    seen: list[tuple[RefreshContext, float]] = []

    async def refresh(ctx: RefreshContext) -> Credentials:
        seen.append((ctx, time.time()))
        refreshed.set()
        return Credentials(user="alice", expire_at=int(time.time()) + 3600)

    hub, expire_at = tokenless_hub(2, refresh)
    async with serve(hub) as url, sdk_client(url) as (client, events):
        async with asyncio.timeout(WAIT):
            await refreshed.wait()
        [(ctx, called_at)] = seen
        assert (ctx.client, ctx.user, ctx.credentials) == (client.client_id, "alice", None)
        assert called_at >= expire_at - CLOCK_SLACK

        # Past the first expiry: still the first connection, and it answers commands.
        assert client.state == ClientState.CONNECTED
        assert (await client.rpc("whoami", {})).data == {"user": "alice"}
        assert [c.code for c in events.of("connecting")] == [SDK_CONNECT_CALLED]
        assert events.of("disconnected") == []
        # And it is still the user it was: a server-side subscription of alice reaches it.
        await hub.subscribe_user("alice", "lobby")
        assert (await events.next("subscribed")).channel == "lobby"
        await hub.publish("lobby", {"after": "refresh"})
        assert (await events.next("publication")).pub.data == {"after": "refresh"}
        assert len(seen) == 1


async def test_tokenless_connect_reply_has_no_expiry_and_on_refresh_none_closes_with_3005() -> None:
    refreshed: list[float] = []

    async def refresh(ctx: RefreshContext) -> Credentials | None:
        refreshed.append(time.time())
        return None

    hub, expire_at = tokenless_hub(2, refresh)
    async with serve(hub) as url, wire(url) as client:
        reply = await client.request({"id": 1, "connect": {}})
        # The server refreshes this connection itself: the client is not told to refresh.
        assert set(reply["connect"]) == {"client", "version"}
        assert "expires" not in reply["connect"] and "ttl" not in reply["connect"]

        assert await client.closed_with_reason() == ([], 3005, "connection expired")
        assert len(refreshed) == 1
        assert refreshed[0] >= expire_at - CLOCK_SLACK


# -- stale connections --------------------------------------------------------------------


async def test_connection_that_never_sends_connect_is_closed_with_3502() -> None:
    delay = 0.3
    hub = make_hub(ping_interval=0, client_stale_close_delay=delay)
    async with serve(hub) as url, wire(url) as good:
        assert (await good.request({"id": 1, "connect": {"token": hs256("alice")}}))["id"] == 1
        async with wire(url) as stale:
            opened = time.monotonic()
            assert await stale.closed_with_reason() == ([], 3502, "stale")
        assert time.monotonic() - opened >= delay - CLOCK_SLACK
        # A connection that did connect is not stale: it outlives the delay and answers.
        assert await good.request({"id": 2, "ping": {}}) == {"id": 2, "ping": {}}


async def test_connection_refused_at_connect_then_idle_is_closed_with_3502() -> None:
    delay = 0.3
    hub = make_hub(ping_interval=0, client_stale_close_delay=delay, allow_anonymous=False)
    async with serve(hub) as url, wire(url) as client:
        opened = time.monotonic()
        reply = await client.request({"id": 1, "connect": {}})
        assert reply == {"id": 1, "error": {"code": 101, "message": "unauthorized"}}
        assert await client.closed_with_reason() == ([], 3502, "stale")
        assert time.monotonic() - opened >= delay - CLOCK_SLACK
