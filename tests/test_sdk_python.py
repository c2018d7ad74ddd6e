"""The hub driven by the official Python SDK (centrifuge-python) over a real uvicorn server.

Every test starts its own hub and server, connects one or more real ``centrifuge.Client``
instances and observes the SDK through its event handlers: :class:`Events` feeds every
event into a per-kind queue, and the tests wait on those queues with bounded timeouts.
Nothing is synchronised with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from centrifuge import (
    Client,
    ClientDisconnectedError,
    ClientState,
    StreamPosition,
    SubscriptionState,
    SubscriptionUnsubscribedError,
)
from centrifuge import ReplyError as SDKReplyError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from namespaces import CHAT, LOCKED
from sdk_events import SDK_CONNECT_CALLED, Events
from servers import running_server
from wsclient import ProtocolClient

from fastapi_realtime import (
    ChannelOptions,
    ConnectContext,
    ConnectReply,
    Credentials,
    ErrorCode,
    Hub,
    HubSettings,
    JWTAuth,
    PublishContext,
    ReplyError,
    RPCContext,
    SubscribeContext,
    SubscriptionGrant,
)

WAIT = 5.0
"""Upper bound of every single wait, in seconds."""

SECRET = "fastapi-realtime-test-secret-0123456789abcdef"
"""HS256 secret (longer than 32 bytes, so PyJWT does not warn about its length)."""

NAMESPACES = {
    "": ChannelOptions(),
    "chat": CHAT,
    "news": ChannelOptions(history_size=10),
    "short": ChannelOptions(history_size=3),
    "locked": LOCKED,
}

# centrifuge-python's own codes (centrifuge/codes.py), for the states it enters by itself.
SDK_TRANSPORT_CLOSED = 1
SDK_DISCONNECTED_UNAUTHORIZED = 1
SDK_UNSUBSCRIBED_UNAUTHORIZED = 1
SDK_SUBSCRIBE_CALLED = 0
CLOCK_SLACK = 0.05
"""Seconds allowed between the server's loop clock and this test's wall clock."""


# -- helpers ------------------------------------------------------------------------------


def make_hub(*, auth: JWTAuth | None = None, **settings: Any) -> Hub:
    settings.setdefault("namespaces", NAMESPACES)
    return Hub(HubSettings(**settings), auth=auth if auth is not None else JWTAuth(secret=SECRET))


@contextlib.asynccontextmanager
async def serve(hub: Hub) -> AsyncIterator[str]:
    """Serve ``hub`` on a real server; yields the SDK endpoint URL.

    On a normal exit it also checks that every session of the hub was closed.
    """
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server(app) as server:
        yield f"{server.ws_url}/connection/websocket"
        async with asyncio.timeout(WAIT):
            await hub.wait_idle()


@contextlib.asynccontextmanager
async def sdk_client(url: str, **options: Any) -> AsyncIterator[tuple[Client, Events]]:
    """A centrifuge-python client (not connected yet) and its recorded events."""
    events = Events()
    options.setdefault("timeout", WAIT)
    options.setdefault("max_reconnect_delay", 0.5)
    client = Client(url, events=events, proxy=None, **options)
    try:
        yield client, events
    finally:
        await client.disconnect()


async def connected(url: str, stack: contextlib.AsyncExitStack, **options: Any) -> tuple[Client, Events]:
    client, events = await stack.enter_async_context(sdk_client(url, **options))
    await client.connect()
    await client.ready(timeout=WAIT)
    return client, events


async def subscribed(client: Client, channel: str, **options: Any) -> tuple[Any, Events]:
    events = Events()
    sub = client.new_subscription(channel, events=events, **options)
    await sub.subscribe()
    await sub.ready(timeout=WAIT)
    return sub, events


async def take_publications(events: Events, n: int) -> list[Any]:
    """The next ``n`` publications (their ``pub`` objects), in arrival order."""
    return [(await events.next("publication")).pub for _ in range(n)]


def hs256(sub: str, *, ttl: float | None = 3600, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, **claims}
    if ttl is not None:
        payload["exp"] = int(time.time() + ttl)
    return jwt.encode(payload, SECRET, algorithm="HS256")


def sub_token(sub: str, channel: str, *, exp: int | None = None, **claims: Any) -> str:
    payload: dict[str, Any] = {"sub": sub, "channel": channel, **claims}
    payload["exp"] = exp if exp is not None else int(time.time()) + 3600
    return jwt.encode(payload, SECRET, algorithm="HS256")


# -- connect and authentication -----------------------------------------------------------


async def test_hs256_token_connects_and_user_is_visible_in_presence() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        token = hs256("alice", info={"name": "Alice"})
        client, events = await connected(url, stack, token=token)
        ctx = await events.next("connected")
        assert ctx.client == client.client_id
        assert ctx.version.startswith("fastapi-realtime")
        assert client.state == ClientState.CONNECTED

        sub, _ = await subscribed(client, "chat:lobby")
        presence = await sub.presence()
        assert list(presence.clients) == [client.client_id]
        info = presence.clients[client.client_id]
        assert info.user == "alice"
        assert info.client == client.client_id
        assert info.conn_info == {"name": "Alice"}


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_asymmetric_token_connects_with_public_key(algorithm: str) -> None:
    if algorithm == "RS256":
        private_key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private_key = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    token = jwt.encode({"sub": "carol", "exp": int(time.time()) + 3600}, private_key, algorithm=algorithm)
    hub = make_hub(auth=JWTAuth(public_key=public_pem))
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=token)
        sub, _ = await subscribed(client, "chat:keys")
        presence = await sub.presence()
        assert presence.clients[client.client_id].user == "carol"

        # A token signed with the HS256 secret is not accepted by a public-key hub.
        other, other_events = await stack.enter_async_context(sdk_client(url, token=hs256("carol")))
        await other.connect()
        ctx = await other_events.next("disconnected")
        assert ctx.code == 3500


async def test_anonymous_connect_refused_with_101_when_not_allowed() -> None:
    hub = make_hub(allow_anonymous=False)
    async with serve(hub) as url, sdk_client(url) as (client, events):
        await client.connect()
        # Error 101 is not temporary: centrifuge-python goes to DISCONNECTED with the error's
        # code and message, and does not retry.
        ctx = await events.next("disconnected")
        assert (ctx.code, ctx.reason) == (101, "unauthorized")
        assert client.state == ClientState.DISCONNECTED
        assert events.of("connected") == []
        assert [c.code for c in events.of("connecting")] == [SDK_CONNECT_CALLED]
        with pytest.raises(ClientDisconnectedError):
            await client.ready(timeout=WAIT)


async def test_anonymous_connect_accepted_when_allowed() -> None:
    hub = make_hub(allow_anonymous=True)
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack)
        assert (await events.next("connected")).client == client.client_id
        sub, _ = await subscribed(client, "chat:open")
        presence = await sub.presence()
        assert presence.clients[client.client_id].user == ""


async def test_invalid_token_closes_with_3500_and_client_does_not_reconnect() -> None:
    hub = make_hub()
    bad = jwt.encode({"sub": "mallory"}, "not-the-secret-" + "x" * 32, algorithm="HS256")
    async with serve(hub) as url, sdk_client(url, token=bad) as (client, events):
        await client.connect()
        ctx = await events.next("disconnected")
        assert ctx.code == 3500
        assert ctx.reason.startswith("invalid token")
        # 3500-3999 is terminal: no reconnect is scheduled (the SDK only reconnects from
        # CONNECTING), and the server holds no session.
        assert client.state == ClientState.DISCONNECTED
        assert [c.code for c in events.of("connecting")] == [SDK_CONNECT_CALLED]
        async with asyncio.timeout(WAIT):
            await hub.wait_idle()
        assert hub.stats["sessions"] == 0


# -- publications -------------------------------------------------------------------------


async def test_server_side_publications_arrive_in_order() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        _, sub_events = await subscribed(client, "news:feed")
        positions = [await hub.publish("news:feed", {"n": n}) for n in range(30)]
        pubs = await take_publications(sub_events, 30)
        assert [p.data for p in pubs] == [{"n": n} for n in range(30)]
        assert [p.offset for p in pubs] == [pos.offset for pos in positions] == list(range(1, 31))
        assert all(p.info is None for p in pubs)


async def test_client_publish_allowed_in_namespace_that_allows_it() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        alice, _ = await connected(url, stack, token=hs256("alice"))
        bob, _ = await connected(url, stack, token=hs256("bob"))
        alice_sub, alice_events = await subscribed(alice, "chat:room")
        _, bob_events = await subscribed(bob, "chat:room")

        await alice_sub.publish({"text": "hi"})
        for events in (alice_events, bob_events):
            pub = (await events.next("publication")).pub
            assert pub.data == {"text": "hi"}
            assert pub.info.user == "alice"
            assert pub.info.client == alice.client_id
            assert pub.offset == 1


async def test_client_publish_refused_with_103_where_the_namespace_does_not_allow_it() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        sub, sub_events = await subscribed(client, "news:feed")
        with pytest.raises(SDKReplyError) as exc_info:
            await sub.publish({"text": "spam"})
        assert (exc_info.value.code, exc_info.value.message) == (103, "permission denied")
        assert exc_info.value.temporary is False
        assert client.state == ClientState.CONNECTED  # an error reply leaves the connection open
        history = await sub.history(limit=-1)
        assert history.publications == []
        assert sub_events.pending("publication") == 0


async def test_on_publish_hook_rewrites_data_or_refuses() -> None:
    # The hook refines what the namespace allows: here, publishing by subscribers.
    hub = make_hub(
        namespaces={**NAMESPACES, "news": ChannelOptions(history_size=10, allow_publish_for_subscriber=True)}
    )
    seen: list[PublishContext] = []

    @hub.on_publish
    async def moderate(ctx: PublishContext) -> Any:
        seen.append(ctx)
        if "forbidden" in ctx.data["text"]:
            raise ReplyError(403, "moderated")
        return {"text": ctx.data["text"].upper(), "by": ctx.user}

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        sub, sub_events = await subscribed(client, "news:mod")

        await sub.publish({"text": "hello"})
        pub = (await sub_events.next("publication")).pub
        assert pub.data == {"text": "HELLO", "by": "alice"}
        assert pub.info.user == "alice"

        with pytest.raises(SDKReplyError) as exc_info:
            await sub.publish({"text": "forbidden words"})
        assert (exc_info.value.code, exc_info.value.message) == (403, "moderated")

        await sub.publish({"text": "again"})
        pub = (await sub_events.next("publication")).pub
        assert pub.data == {"text": "AGAIN", "by": "alice"}
        assert pub.offset == 2  # the refused publication took no offset
        assert [(c.user, c.channel, c.client) for c in seen] == [("alice", "news:mod", client.client_id)] * 3


# -- presence, join/leave, history --------------------------------------------------------


async def test_presence_and_presence_stats_list_every_connection() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        alice1, _ = await connected(url, stack, token=hs256("alice"))
        alice2, _ = await connected(url, stack, token=hs256("alice"))
        bob, _ = await connected(url, stack, token=hs256("bob"))
        subs = [(await subscribed(c, "chat:presence"))[0] for c in (alice1, alice2, bob)]

        presence = await subs[0].presence()
        assert {cid: info.user for cid, info in presence.clients.items()} == {
            alice1.client_id: "alice",
            alice2.client_id: "alice",
            bob.client_id: "bob",
        }
        stats = await subs[2].presence_stats()
        assert (stats.num_clients, stats.num_users) == (3, 2)

        await subs[2].unsubscribe()
        assert subs[2].state == SubscriptionState.UNSUBSCRIBED
        # Commands of one connection run in order: once bob's next command is answered (103,
        # no longer subscribed), his unsubscribe has been processed.
        with pytest.raises(SDKReplyError) as exc_info:
            await bob.presence_stats("chat:presence")
        assert exc_info.value.code == 103
        stats = await subs[0].presence_stats()
        assert (stats.num_clients, stats.num_users) == (2, 1)

        # Presence is refused on a namespace without it.
        news_sub, _ = await subscribed(bob, "news:nopresence")
        with pytest.raises(SDKReplyError) as exc_info:
            await news_sub.presence()
        assert exc_info.value.code == 108


async def test_join_and_leave_events_seen_by_another_subscriber_and_the_own_join() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        alice, _ = await connected(url, stack, token=hs256("alice", info={"name": "Alice"}))
        bob, _ = await connected(url, stack, token=hs256("bob", info={"name": "Bob"}))
        _, alice_events = await subscribed(alice, "chat:jl", join_leave=True)
        # As with Centrifugo, a subscriber that asked for join/leave sees its own join too.
        own = (await alice_events.next("join")).info
        assert (own.user, own.client, own.conn_info) == ("alice", alice.client_id, {"name": "Alice"})

        bob_sub, bob_events = await subscribed(bob, "chat:jl")
        join = (await alice_events.next("join")).info
        assert (join.user, join.client, join.conn_info) == ("bob", bob.client_id, {"name": "Bob"})

        await bob_sub.unsubscribe()
        leave = (await alice_events.next("leave")).info
        assert (leave.user, leave.client) == ("bob", bob.client_id)

        # A subscriber that did not ask for join/leave gets none.
        assert bob_events.of("join") == bob_events.of("leave") == []
        assert [ctx.info.user for ctx in alice_events.of("join")] == ["alice", "bob"]


async def test_history_with_limit_since_and_reverse() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        sub, _ = await subscribed(client, "chat:history")
        for n in range(1, 6):
            await hub.publish("chat:history", {"n": n})

        everything = await sub.history(limit=-1)
        assert [p.data["n"] for p in everything.publications] == [1, 2, 3, 4, 5]
        assert [p.offset for p in everything.publications] == [1, 2, 3, 4, 5]
        assert everything.offset == 5
        assert everything.epoch

        first_two = await sub.history(limit=2)
        assert [p.offset for p in first_two.publications] == [1, 2]

        since = await sub.history(limit=-1, since=StreamPosition(offset=2, epoch=everything.epoch))
        assert [p.offset for p in since.publications] == [3, 4, 5]

        latest_two = await sub.history(limit=2, reverse=True)
        assert [p.offset for p in latest_two.publications] == [5, 4]

        position_only = await sub.history()  # the SDK default is limit=0
        assert position_only.publications == []
        assert (position_only.offset, position_only.epoch) == (5, everything.epoch)

        with pytest.raises(SDKReplyError) as exc_info:
            await sub.history(limit=-1, since=StreamPosition(offset=1, epoch="another-epoch"))
        assert exc_info.value.code == 112


async def test_history_on_namespace_without_history_is_108() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        sub, _ = await subscribed(client, "lobby")  # default namespace: history_size=0
        with pytest.raises(SDKReplyError) as exc_info:
            await sub.history(limit=10)
        assert (exc_info.value.code, exc_info.value.message) == (108, "not available")


# -- RPC ----------------------------------------------------------------------------------


async def test_rpc_to_registered_handler_returns_its_data() -> None:
    hub = make_hub()

    @hub.rpc("add")
    async def add(ctx: RPCContext, data: Any) -> Any:
        return {"sum": data["a"] + data["b"], "user": ctx.user, "method": ctx.method, "meta": ctx.meta}

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice", meta={"plan": "pro"}))
        result = await client.rpc("add", {"a": 2, "b": 40})
        assert result.data == {"sum": 42, "user": "alice", "method": "add", "meta": {"plan": "pro"}}


@pytest.mark.parametrize(
    ("handlers", "code", "message"),
    [
        pytest.param(["known"], 104, "method not found", id="unknown_method_is_104"),
        # No @hub.rpc at all: RPC is not configured, as Centrifugo without an RPC proxy.
        pytest.param([], 108, "not available", id="no_handler_at_all_is_108"),
    ],
)
async def test_rpc_refused(handlers: list[str], code: int, message: str) -> None:
    hub = make_hub()
    for name in handlers:
        hub.rpc(name)(lambda ctx, data: asyncio.sleep(0))
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        with pytest.raises(SDKReplyError) as exc_info:
            await client.rpc("nope", {})
        assert (exc_info.value.code, exc_info.value.message) == (code, message)
        assert client.state == ClientState.CONNECTED


async def test_rpc_handler_raising_reply_error_returns_its_app_code() -> None:
    hub = make_hub()

    @hub.rpc("brew")
    async def brew(ctx: RPCContext, data: Any) -> Any:
        raise ReplyError(418, "I'm a teapot")

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        with pytest.raises(SDKReplyError) as exc_info:
            await client.rpc("brew", {"coffee": True})
        assert (exc_info.value.code, exc_info.value.message, exc_info.value.temporary) == (418, "I'm a teapot", False)
        assert client.state == ClientState.CONNECTED


# -- hooks and server-side subscriptions --------------------------------------------------


async def test_on_connect_hook_sets_credentials_from_headers_and_data_and_replies_data() -> None:
    hub = make_hub(allow_anonymous=False)
    contexts: list[ConnectContext] = []

    @hub.on_connect
    async def authenticate(ctx: ConnectContext) -> ConnectReply | None:
        contexts.append(ctx)
        if ctx.headers.get("x-api-key") != "key-1":
            raise ReplyError(ErrorCode.UNAUTHORIZED, "bad api key")
        user = ctx.data["user"]
        return ConnectReply(Credentials(user=user, info={"via": "api-key"}), data={"welcome": user})

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(
            url, stack, headers={"X-Api-Key": "key-1"}, data={"user": "dave"}, name="py-test", version="1.2.3"
        )
        assert (await events.next("connected")).data == {"welcome": "dave"}
        sub, _ = await subscribed(client, "chat:hooked")
        info = (await sub.presence()).clients[client.client_id]
        assert (info.user, info.conn_info) == ("dave", {"via": "api-key"})
        ctx = contexts[0]
        assert (ctx.credentials, ctx.name, ctx.version, ctx.transport) == (None, "py-test", "1.2.3", "websocket")
        assert ctx.client == client.client_id

        refused, refused_events = await stack.enter_async_context(
            sdk_client(url, headers={"X-Api-Key": "wrong"}, data={"user": "eve"})
        )
        await refused.connect()
        ctx_refused = await refused_events.next("disconnected")
        assert (ctx_refused.code, ctx_refused.reason) == (101, "bad api key")


async def test_token_channels_claim_makes_server_side_subscriptions() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        token = hs256("alice", channels=["news:alerts", "chat:direct"])
        client, events = await connected(url, stack, token=token)
        subscribed_channels = {(await events.next("subscribed")).channel for _ in range(2)}
        assert subscribed_channels == {"news:alerts", "chat:direct"}
        assert client.subscriptions() == {}  # no client-side subscription was made

        await hub.publish("news:alerts", {"alert": 1})
        await hub.publish("chat:direct", {"dm": 1})
        await hub.publish("news:alerts", {"alert": 2})
        got = [(ctx.channel, ctx.pub.data) for ctx in [await events.next("publication") for _ in range(3)]]
        assert got == [("news:alerts", {"alert": 1}), ("chat:direct", {"dm": 1}), ("news:alerts", {"alert": 2})]

        # The server-side subscription counts in presence like any other.
        stats = await hub.presence_stats("chat:direct")
        assert stats == (1, 1)


# -- private channels and on_subscribe ----------------------------------------------------


async def test_private_channel_needs_a_subscription_token() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))

        denied = Events()
        sub = client.new_subscription("$chat:secret", events=denied)
        await sub.subscribe()
        ctx = await denied.next("unsubscribed")
        assert (ctx.code, ctx.reason) == (103, "permission denied")
        assert sub.state == SubscriptionState.UNSUBSCRIBED
        with pytest.raises(SubscriptionUnsubscribedError):
            await sub.ready(timeout=WAIT)
        client.remove_subscription(sub)

        wrong = Events()
        sub = client.new_subscription("$chat:secret", events=wrong, token=sub_token("alice", "$chat:other"))
        await sub.subscribe()
        assert (await wrong.next("unsubscribed")).code == 103
        client.remove_subscription(sub)

        token = sub_token("alice", "$chat:secret", info={"role": "member"})
        sub, sub_events = await subscribed(client, "$chat:secret", token=token)
        assert sub.state == SubscriptionState.SUBSCRIBED
        info = (await sub.presence()).clients[client.client_id]
        assert info.chan_info == {"role": "member"}
        await hub.publish("$chat:secret", {"psst": True})
        assert (await sub_events.next("publication")).pub.data == {"psst": True}


async def test_on_subscribe_hook_allows_and_refuses() -> None:
    hub = make_hub()

    @hub.on_subscribe
    async def decide(ctx: SubscribeContext) -> SubscriptionGrant | None:
        if ctx.channel == "$chat:vip":
            if ctx.user == "alice" and ctx.data == {"ticket": 1}:
                return SubscriptionGrant(info={"vip": True}, data={"welcome": ctx.user})
            raise ReplyError(403, "vip only")
        return None

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        alice, _ = await connected(url, stack, token=hs256("alice"))
        bob, _ = await connected(url, stack, token=hs256("bob"))

        # No token: the hook's grant is what lets alice into the private channel.
        sub, sub_events = await subscribed(alice, "$chat:vip", data={"ticket": 1})
        ctx = await sub_events.next("subscribed")
        assert ctx.data == {"welcome": "alice"}
        assert (await sub.presence()).clients[alice.client_id].chan_info == {"vip": True}

        refused = Events()
        bob_sub = bob.new_subscription("$chat:vip", events=refused, data={"ticket": 1})
        await bob_sub.subscribe()
        ctx = await refused.next("unsubscribed")
        assert (ctx.code, ctx.reason) == (403, "vip only")
        assert bob_sub.state == SubscriptionState.UNSUBSCRIBED

        # Returning None keeps the default rules: public channels are open.
        await subscribed(bob, "chat:public")


# -- token expiry and refresh -------------------------------------------------------------


async def test_connection_token_refreshed_with_get_token_keeps_client_connected() -> None:
    delay = 0.5
    hub = make_hub(expired_close_delay=delay)
    exp = int(time.time()) + 2
    get_token_called = asyncio.Event()

    async def get_token() -> str:
        get_token_called.set()
        return hs256("alice", ttl=3600)

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        short = hs256("alice", ttl=None, exp=exp)
        client, events = await connected(url, stack, token=short, get_token=get_token)
        # A control connection with the same token and no way to refresh it: its close with
        # 3005 marks the moment the server's deadline (>= exp + delay) has passed.
        _, control_events = await connected(url, stack, token=short)

        assert (await events.next("connecting")).code == SDK_CONNECT_CALLED
        assert (await control_events.next("connecting")).code == SDK_CONNECT_CALLED

        async with asyncio.timeout(WAIT):
            await get_token_called.wait()
        closed = await control_events.next("connecting")
        assert (closed.code, closed.reason) == (3005, "connection expired")
        assert time.time() >= exp + delay - CLOCK_SLACK

        # The refreshed client's own deadline, had it not been pushed back, is before
        # exp + 1 + delay (the server counts the ttl in whole seconds): observe past it.
        remaining = exp + 1 + delay + 0.3 - time.time()
        if remaining > 0:
            with pytest.raises(TimeoutError):
                await events.next("connecting", within=remaining)
        assert client.state == ClientState.CONNECTED
        assert events.of("disconnected") == []
        with pytest.raises(SDKReplyError) as exc_info:
            await client.rpc("missing", {})  # the connection still answers commands
        assert exc_info.value.code == 108  # no RPC handler registered: not available


async def test_expired_connection_without_refresh_is_closed_with_3005() -> None:
    delay = 0.3
    hub = make_hub(expired_close_delay=delay)
    exp = int(time.time()) + 2
    async with serve(hub) as url, sdk_client(url, token=hs256("alice", ttl=None, exp=exp)) as (client, events):
        await client.connect()
        await client.ready(timeout=WAIT)
        ctx = await events.next("connecting")  # initial connect
        assert ctx.code == SDK_CONNECT_CALLED

        ctx = await events.next("connecting")
        assert ctx.code == 3005
        assert time.time() >= exp + delay - CLOCK_SLACK

        # 3005 is not terminal: the SDK reconnects with the expired token, the server answers
        # 109 "token expired", and without get_token the SDK gives up as unauthorized.
        error = await events.next("error")
        assert getattr(error.error, "code", None) == ErrorCode.TOKEN_EXPIRED
        ctx = await events.next("disconnected")
        assert ctx.code == SDK_DISCONNECTED_UNAUTHORIZED
        assert client.state == ClientState.DISCONNECTED


async def test_subscription_token_refreshed_with_sub_refresh() -> None:
    delay = 0.5
    hub = make_hub(expired_close_delay=delay)
    exp = int(time.time()) + 2
    channel = "$chat:expiring"
    refreshed = asyncio.Event()
    asked_for: list[str] = []

    async def get_sub_token(ch: str) -> str:
        asked_for.append(ch)
        refreshed.set()
        return sub_token("alice", ch)

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        control, _ = await connected(url, stack, token=hs256("alice"))
        short = sub_token("alice", channel, exp=exp)
        sub, sub_events = await subscribed(client, channel, token=short, get_token=get_sub_token)
        _, control_events = await subscribed(control, channel, token=short)

        async with asyncio.timeout(WAIT):
            await refreshed.wait()
        assert asked_for == [channel]

        # The control subscription could not refresh: the server ends it with 2501 (the SDK
        # resubscribes, gets 109 for its expired token and, without get_token, gives up).
        assert (await control_events.next("subscribing")).code == SDK_SUBSCRIBE_CALLED
        ctx = await control_events.next("subscribing")
        assert (ctx.code, ctx.reason) == (2501, "subscription expired")
        assert time.time() >= exp + delay - CLOCK_SLACK
        ctx = await control_events.next("unsubscribed")
        assert ctx.code == SDK_UNSUBSCRIBED_UNAUTHORIZED

        remaining = exp + 1 + delay + 0.3 - time.time()
        if remaining > 0:
            with pytest.raises(TimeoutError):
                await sub_events.next("unsubscribed", within=remaining)
        assert sub.state == SubscriptionState.SUBSCRIBED
        assert [c.code for c in sub_events.of("subscribing")] == [SDK_SUBSCRIBE_CALLED]
        await hub.publish(channel, {"still": "here"})
        assert (await sub_events.next("publication")).pub.data == {"still": "here"}


# -- recovery -----------------------------------------------------------------------------


async def _drop_transport(client: Client) -> None:
    """Kill the client's TCP connection under it, as a network failure would.

    centrifuge-python has no public API for this: ``client._conn`` is its websockets
    ``ClientConnection``; aborting its transport makes the SDK's reader see the connection
    lost (no close frame), so it reconnects by itself with transport-closed code 1.
    """
    conn = client._conn
    assert conn is not None
    conn.transport.abort()


async def test_recovery_after_connection_loss_delivers_every_missed_publication() -> None:
    hub = make_hub()
    channel = "chat:recover"
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack, token=hs256("alice"))
        _, sub_events = await subscribed(client, channel, recoverable=True, positioned=True)
        first = await sub_events.next("subscribed")
        assert (first.recoverable, first.positioned, first.was_recovering, first.recovered) == (
            True,
            True,
            False,
            False,
        )
        epoch = first.stream_position.epoch
        assert epoch

        for n in range(1, 4):
            await hub.publish(channel, {"n": n})
        assert [p.offset for p in await take_publications(sub_events, 3)] == [1, 2, 3]

        events.hold_reconnect = asyncio.Event()
        try:
            await _drop_transport(client)
            assert (await events.next("connecting")).code == SDK_CONNECT_CALLED
            lost = await events.next("connecting")
            assert lost.code == SDK_TRANSPORT_CLOSED
            assert (await sub_events.next("subscribing")).code == SDK_SUBSCRIBE_CALLED
            assert (await sub_events.next("subscribing")).code == SDK_TRANSPORT_CLOSED
            async with asyncio.timeout(WAIT):
                await hub.wait_idle()  # the server saw the connection go

            missed = 7
            for n in range(4, 4 + missed):
                await hub.publish(channel, {"n": n})
        finally:
            events.hold_reconnect.set()

        again = await sub_events.next("subscribed")
        assert (again.was_recovering, again.recovered) == (True, True)
        # As in Centrifuge, a recovered reply carries the client's own offset; the client
        # catches up by reading the recovered publications.
        assert (again.stream_position.offset, again.stream_position.epoch) == (3, epoch)
        recovered = await take_publications(sub_events, missed)
        assert [p.data["n"] for p in recovered] == list(range(4, 4 + missed))
        assert [p.offset for p in recovered] == list(range(4, 4 + missed))

        # Live publications continue right after the recovered ones.
        await hub.publish(channel, {"n": 11})
        assert (await sub_events.next("publication")).pub.offset == 11
        assert client.state == ClientState.CONNECTED


async def test_recovery_fails_when_the_gap_exceeds_the_history_size() -> None:
    hub = make_hub()
    channel = "short:recover"  # history_size=3
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack, token=hs256("alice"))
        _, sub_events = await subscribed(client, channel, recoverable=True, positioned=True)
        await hub.publish(channel, {"n": 1})
        assert (await take_publications(sub_events, 1))[0].offset == 1

        events.hold_reconnect = asyncio.Event()
        try:
            await _drop_transport(client)
            async with asyncio.timeout(WAIT):
                await hub.wait_idle()
            for n in range(2, 7):  # 5 missed, only the last 3 kept
                await hub.publish(channel, {"n": n})
        finally:
            events.hold_reconnect.set()

        await sub_events.next("subscribed")  # the first subscribe
        again = await sub_events.next("subscribed")
        assert (again.was_recovering, again.recovered) == (True, False)
        assert again.stream_position.offset == 6  # positioned at the stream top

        # None of the missed publications is delivered: the next one is the live one.
        await hub.publish(channel, {"n": 7})
        pub = (await sub_events.next("publication")).pub
        assert (pub.offset, pub.data) == (7, {"n": 7})


# -- refusals and server-side actions -----------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "code", "message"),
    [
        pytest.param("chat:room#bob", 103, "permission denied", id="channel_of_another_user_is_103"),
        pytest.param("locked:door", 103, "permission denied", id="allow_subscribe_false_is_103"),
        pytest.param("nowhere:x", 102, "unknown channel", id="unconfigured_namespace_is_102"),
    ],
)
async def test_subscribe_refused(channel: str, code: int, message: str) -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        events = Events()
        sub = client.new_subscription(channel, events=events)
        await sub.subscribe()
        ctx = await events.next("unsubscribed")
        assert (ctx.code, ctx.reason) == (code, message)
        assert sub.state == SubscriptionState.UNSUBSCRIBED
        assert client.state == ClientState.CONNECTED


@pytest.mark.parametrize(
    "sub_token",
    [
        pytest.param("not-a-jwt", id="malformed"),
        pytest.param(jwt.encode({"sub": "alice", "channel": "$chat:x"}, "another-secret-" * 3, "HS256"), id="forged"),
    ],
)
async def test_invalid_subscription_token_is_103_and_the_connection_stays(sub_token: str) -> None:
    # As with Centrifugo: a bad subscription token fails that subscribe; only a bad connection
    # token is worth a disconnect.
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, client_events = await connected(url, stack, token=hs256("alice"))
        events = Events()
        sub = client.new_subscription("$chat:x", events=events, token=sub_token)
        await sub.subscribe()
        ctx = await events.next("unsubscribed")
        assert ctx.code == 103
        assert sub.state == SubscriptionState.UNSUBSCRIBED
        assert client.state == ClientState.CONNECTED
        assert client_events.of("disconnected") == []
        await subscribed(client, "chat:after")  # the same connection goes on serving


async def test_user_limited_channel_allows_its_user() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        sub, _ = await subscribed(client, "chat:room#alice,bob")
        assert sub.state == SubscriptionState.SUBSCRIBED


async def test_hub_disconnect_closes_the_users_connections_with_3503() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        alice, alice_events = await connected(url, stack, token=hs256("alice"))
        bob, _ = await connected(url, stack, token=hs256("bob"))
        await hub.disconnect("alice")
        ctx = await alice_events.next("disconnected")
        assert (ctx.code, ctx.reason) == (3503, "force disconnect")
        assert alice.state == ClientState.DISCONNECTED
        assert [c.code for c in alice_events.of("connecting")] == [SDK_CONNECT_CALLED]  # no reconnect
        assert bob.state == ClientState.CONNECTED
        with pytest.raises(SDKReplyError) as exc_info:
            await bob.rpc("nothing", {})  # bob's connection is untouched and answers
        assert exc_info.value.code == 108  # no RPC handler registered: not available


async def test_hub_unsubscribe_user_ends_the_subscription_with_2000() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        sub, sub_events = await subscribed(client, "chat:kick")
        other, other_events = await subscribed(client, "chat:stay")
        await hub.unsubscribe_user("alice", "chat:kick")
        ctx = await sub_events.next("unsubscribed")
        assert (ctx.code, ctx.reason) == (2000, "server unsubscribe")
        assert sub.state == SubscriptionState.UNSUBSCRIBED
        assert other.state == SubscriptionState.SUBSCRIBED
        assert client.state == ClientState.CONNECTED
        await hub.publish("chat:stay", {"ok": True})
        assert (await other_events.next("publication")).pub.data == {"ok": True}
        assert sub_events.pending("publication") == 0


# -- liveness -----------------------------------------------------------------------------


async def test_client_that_never_answers_pings_is_closed_with_3012() -> None:
    hub = make_hub(allow_anonymous=True, ping_interval=0.3, pong_timeout=0.2)
    async with serve(hub) as url:
        async with ProtocolClient.connected(url) as client:
            await client.send({"id": 1, "connect": {}})
            async with asyncio.timeout(WAIT):  # every message the server sends (never answering) until it closes
                messages, code, reason = await client.closed_with_reason()
        reply = messages[0]
        assert reply["id"] == 1
        assert reply["connect"]["pong"] is True
        assert {} in messages[1:]  # at least one server ping
        assert (code, reason) == (3012, "no pong")
