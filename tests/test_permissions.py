"""The client permission model, walked as a whole matrix.

user kind x channel kind x action x hook present or not, each case run against the protocol
handler in-process (a fake transport, a real ``ClientHandler``), with the expected outcome
written out below; then the reported exploits end to end over a real server.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
from centrifuge import Client
from centrifuge import ReplyError as SDKReplyError
from fakes import FakeProtocolClient
from fastapi import FastAPI
from servers import running_server
from wsclient import ProtocolClient

from fastapi_realtime import ChannelOptions, Hub, HubSettings, JWTAuth, PublishContext, ReplyError, SubscribeContext
from fastapi_realtime.hooks import SubscriptionGrant
from fastapi_realtime.settings import INSECURE_ENV

SECRET = "fastapi-realtime-permissions-secret-0123456789"

NAMESPACES = {
    # The default namespace with default permissions: anyone subscribes, nobody publishes,
    # subscribers read history and presence.
    "": ChannelOptions(history_size=10, presence=True),
    # Subscribers publish (not anonymous ones); every client reads history and presence.
    "chat": ChannelOptions(
        history_size=10,
        presence=True,
        allow_publish_for_subscriber=True,
        allow_history_for_client=True,
        allow_presence_for_client=True,
    ),
    # Read-only, and not for anonymous clients unless they hold a subscription token.
    "feed": ChannelOptions(history_size=10, presence=True, allow_subscribe_for_anonymous=False),
}

CHANNELS = {
    "default ns": "room",
    "namespace": "chat:room",
    "$private": "$chat:secret",
    "#user": "chat:dm#alice",
    "read-only ns": "feed:news",
}

USERS: dict[str, tuple[str, bool]] = {
    # kind: (user, holds a subscription token for the channel). Kinds holding a token subscribe
    # with it before any other action: they are the subscribers (when the subscribe works).
    "anonymous": ("", False),
    "anonymous subscriber": ("", True),
    "non-subscriber": ("alice", False),
    "subscriber": ("alice", True),
    "other user": ("carol", True),  # another user's #user channel, token and all
}

ACTIONS = ("publish", "subscribe", "history", "presence", "presence_stats")

OK, NO = "ok", 103
EXPECTED: dict[tuple[str, str], tuple[object, ...]] = {
    # (channel kind, user kind):              publish subscribe history presence presence_stats
    ("default ns", "anonymous"):              (NO, OK, NO, NO, NO),
    ("default ns", "anonymous subscriber"):   (NO, OK, OK, OK, OK),
    ("default ns", "non-subscriber"):         (NO, OK, NO, NO, NO),
    ("default ns", "subscriber"):             (NO, OK, OK, OK, OK),
    ("namespace", "anonymous"):               (NO, OK, OK, OK, OK),
    ("namespace", "anonymous subscriber"):    (NO, OK, OK, OK, OK),
    ("namespace", "non-subscriber"):          (NO, OK, OK, OK, OK),
    ("namespace", "subscriber"):              (OK, OK, OK, OK, OK),
    ("$private", "anonymous"):                (NO, NO, NO, NO, NO),
    ("$private", "anonymous subscriber"):     (NO, OK, OK, OK, OK),
    ("$private", "non-subscriber"):           (NO, NO, NO, NO, NO),
    ("$private", "subscriber"):               (OK, OK, OK, OK, OK),
    ("#user", "anonymous"):                   (NO, NO, NO, NO, NO),
    ("#user", "anonymous subscriber"):        (NO, NO, NO, NO, NO),
    ("#user", "non-subscriber"):              (NO, OK, OK, OK, OK),
    ("#user", "subscriber"):                  (OK, OK, OK, OK, OK),
    ("#user", "other user"):                  (NO, NO, NO, NO, NO),
    ("read-only ns", "anonymous"):            (NO, NO, NO, NO, NO),
    ("read-only ns", "anonymous subscriber"): (NO, OK, OK, OK, OK),
    ("read-only ns", "non-subscriber"):       (NO, OK, NO, NO, NO),
    ("read-only ns", "subscriber"):           (NO, OK, OK, OK, OK),
}  # fmt: skip


def token(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def readme_on_publish(ctx: PublishContext) -> None:
    """The README's ``on_publish`` example: it refines (refuses empty messages), nothing more."""
    if not ctx.data.get("text"):
        raise ReplyError(400, "empty message")


async def pass_on_subscribe(ctx: SubscribeContext) -> SubscriptionGrant | None:
    return None  # "default rules apply"


def make_hub(*, hooks: bool, **settings: Any) -> Hub:
    hub = Hub(HubSettings(allow_anonymous=True, namespaces=NAMESPACES, **settings), auth=JWTAuth(secret=SECRET))
    if hooks:
        hub.on_publish(readme_on_publish)
        hub.on_subscribe(pass_on_subscribe)
    return hub


@asynccontextmanager
async def client_of(hub: Hub, user: str) -> AsyncIterator[FakeProtocolClient]:
    async with FakeProtocolClient(hub) as client:
        reply = await client.command("connect", {"token": token({"sub": user})} if user else {})
        assert "error" not in reply, reply
        yield client


def outcome(reply: dict[str, Any]) -> object:
    return reply["error"]["code"] if "error" in reply else OK


def request(action: str, channel: str, sub_token: str) -> dict[str, Any]:
    if action == "publish":
        return {"channel": channel, "data": {"text": "forged?"}}
    if action == "subscribe":
        return {"channel": channel, "token": sub_token} if sub_token else {"channel": channel}
    return {"channel": channel, "limit": 10} if action == "history" else {"channel": channel}


CASES = [
    pytest.param(channel_kind, user_kind, action, id=f"{channel_kind}-{user_kind}-{action}")
    for (channel_kind, user_kind), action in itertools.product(EXPECTED, ACTIONS)
]


async def run_case(hub: Hub, channel_kind: str, user_kind: str, action: str, *, insecure: bool = False) -> object:
    """Run one case; the setup subscribe of a token holder must go as the table (or insecure mode) says."""
    channel = CHANNELS[channel_kind]
    user, holds_token = USERS[user_kind]
    sub_token = token({"sub": user, "channel": channel}) if holds_token else ""
    async with client_of(hub, user) as client:
        if holds_token and action != "subscribe":
            subscribed = await client.command("subscribe", request("subscribe", channel, sub_token))
            expected = OK if insecure else EXPECTED[channel_kind, user_kind][ACTIONS.index("subscribe")]
            assert outcome(subscribed) == expected
        result = outcome(await client.command(action, request(action, channel, sub_token)))
    if action == "publish":  # a refused publication reaches nobody; an allowed one is kept
        published = (await hub.history(channel)).publications
        assert len(published) == (1 if result == OK else 0)
    return result


@pytest.mark.parametrize("hooks", [False, True], ids=["no hook", "hooks"])
@pytest.mark.parametrize(("channel_kind", "user_kind", "action"), CASES)
async def test_permission_matrix(channel_kind: str, user_kind: str, action: str, hooks: bool) -> None:
    async with make_hub(hooks=hooks) as hub:
        result = await run_case(hub, channel_kind, user_kind, action)
    assert result == EXPECTED[channel_kind, user_kind][ACTIONS.index(action)]


@pytest.mark.parametrize(("channel_kind", "user_kind", "action"), CASES)
async def test_insecure_mode_allows_every_case_of_the_matrix(
    channel_kind: str, user_kind: str, action: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*INSECURE_ENV)
    async with make_hub(hooks=False, insecure=True) as hub:
        assert await run_case(hub, channel_kind, user_kind, action, insecure=True) == OK


async def test_insecure_mode_is_refused_at_start_unless_the_environment_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    name, value = INSECURE_ENV
    monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=name):
        await Hub(HubSettings(insecure=True)).start()
    monkeypatch.setenv(name, "1")  # anything but the exact phrase is refused too
    with pytest.raises(RuntimeError, match=name):
        await Hub(HubSettings(insecure=True)).start()
    monkeypatch.setenv(name, value)
    with caplog.at_level(logging.WARNING, logger="fastapi_realtime.hub"):
        async with Hub(HubSettings(insecure=True)) as hub:
            async with FakeProtocolClient(hub) as client:
                assert "error" not in await client.command("connect", {})  # no token, no allow_anonymous
    assert [r.levelno for r in caplog.records if "INSECURE" in r.getMessage()] == [logging.WARNING]


async def test_on_subscribe_grant_opens_a_private_channel_but_never_another_users_channel() -> None:
    hub = make_hub(hooks=False)

    @hub.on_subscribe
    async def grant_all(ctx: SubscribeContext) -> SubscriptionGrant:
        return SubscriptionGrant()

    async with hub, client_of(hub, "carol") as client:
        assert outcome(await client.command("subscribe", {"channel": "$chat:secret"})) == OK
        assert outcome(await client.command("publish", {"channel": "$chat:secret", "data": {}})) == OK
        assert outcome(await client.command("subscribe", {"channel": "chat:dm#alice"})) == NO


async def test_on_publish_runs_after_the_check_and_may_refuse_or_rewrite() -> None:
    hub = make_hub(hooks=False)
    seen: list[str] = []

    @hub.on_publish
    async def rewrite(ctx: PublishContext) -> Any:
        seen.append(ctx.channel)
        if ctx.data.get("bad"):
            raise ReplyError(400, "bad")
        return {"rewritten": ctx.data}

    async with hub, client_of(hub, "alice") as client:
        assert outcome(await client.command("publish", {"channel": "room", "data": {}})) == NO
        assert seen == []  # refused before the hook ran
        await client.command("subscribe", {"channel": "chat:room"})
        assert outcome(await client.command("publish", {"channel": "chat:room", "data": {"bad": 1}})) == 400
        assert outcome(await client.command("publish", {"channel": "chat:room", "data": {"a": 1}})) == OK
        assert [p.data for p in (await hub.history("chat:room")).publications] == [b'{"rewritten":{"a":1}}']


def test_the_names_before_the_split_set_their_whole_group() -> None:
    legacy = ChannelOptions(allow_publish=True, allow_subscribe=False, allow_history=False, allow_presence=False)
    assert (legacy.allow_publish_for_client, legacy.allow_publish_for_anonymous) == (True, True)
    assert not legacy.allow_publish_for_subscriber
    assert (legacy.allow_subscribe_for_client, legacy.allow_subscribe_for_anonymous) == (False, False)
    assert (legacy.allow_history_for_subscriber, legacy.allow_history_for_anonymous) == (False, False)
    assert (legacy.allow_presence_for_subscriber, legacy.allow_presence_for_anonymous) == (False, False)
    assert ChannelOptions() == ChannelOptions(
        allow_publish=False, allow_subscribe=True, allow_history=True, allow_presence=True
    )


# -- end to end: the reported exploits over a real server ---------------------------------


@asynccontextmanager
async def served(hub: Hub) -> AsyncIterator[str]:
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server(app) as server:
        yield server.ws_url + "/connection/websocket"


@pytest.mark.parametrize("hooks", [False, True], ids=["no hook", "readme on_publish"])
async def test_a_client_without_the_token_cannot_publish_into_a_private_channel(hooks: bool) -> None:
    # "chat" with the old allow_publish=True: publishing is open, but not into "$" channels.
    namespaces = {"": ChannelOptions(), "chat": ChannelOptions(allow_publish=True), "feed": ChannelOptions()}
    hub = Hub(HubSettings(allow_anonymous=True, namespaces=namespaces), auth=JWTAuth(secret=SECRET))
    if hooks:
        hub.on_publish(readme_on_publish)
    async with served(hub) as url, ProtocolClient.connected(url) as reader, ProtocolClient.connected(url) as forger:
        secret_token = token({"sub": "", "channel": "$chat:secret"})
        assert "error" not in await reader.command("connect", {})
        assert "error" not in await reader.command("subscribe", {"channel": "$chat:secret", "token": secret_token})
        assert "error" not in await forger.command("connect", {})
        for channel in ("$chat:secret", "room", "feed:news"):
            reply = await forger.command("publish", {"channel": channel, "data": {"text": "forged"}})
            assert reply["error"]["code"] == 103, channel
        assert "error" not in await forger.command("publish", {"channel": "chat:open", "data": {"text": "fine"}})
        await hub.publish("$chat:secret", {"text": "from the server"})
        push = await reader.next_push()  # the first and only publication the reader gets
        assert push["pub"]["data"] == {"text": "from the server"}


async def test_the_python_sdk_sees_the_model_publish_presence_and_history_need_the_read_right() -> None:
    hub = make_hub(hooks=True)
    async with served(hub) as url:
        client = Client(url, token=token({"sub": "alice"}), proxy=None, timeout=5.0)
        try:
            await client.connect()
            await client.ready(timeout=5.0)
            for call in (
                client.publish("$chat:secret", {"text": "forged"}),  # private, no token
                client.publish("room", {"text": "forged"}),  # default namespace: nobody publishes
                client.presence("room"),  # not subscribed
                client.history("room"),
            ):
                with pytest.raises(SDKReplyError) as refused:
                    await call
                assert refused.value.code == 103
            sub = client.new_subscription("room")
            await sub.subscribe()
            await sub.ready(timeout=5.0)
            assert list((await sub.presence()).clients) == [client.client_id]
            assert (await sub.history(limit=10)).publications == []
            assert (await hub.history("$chat:secret")).publications == []
        finally:
            await client.disconnect()


@pytest.mark.parametrize("presence_allowed", [True, False])
async def test_join_and_leave_events_need_the_presence_right(presence_allowed: bool) -> None:
    options = ChannelOptions(presence=True, join_leave=True, allow_presence_for_subscriber=presence_allowed)
    async with Hub(HubSettings(allow_anonymous=True, namespaces={"": options})) as hub:
        async with FakeProtocolClient(hub) as watcher, FakeProtocolClient(hub) as other:
            for client in (watcher, other):
                assert "error" not in await client.command("connect", {})
            assert "error" not in await watcher.command("subscribe", {"channel": "room", "join_leave": True})
            assert "error" not in await other.command("subscribe", {"channel": "room"})
            await hub.publish("room", "marker")
            pushes = []
            while "pub" not in (push := (await watcher.message())["push"]):
                pushes.append(push)
            joins = [push["join"]["info"]["client"] for push in pushes]
            assert joins == ([watcher.session.id, other.session.id] if presence_allowed else [])
