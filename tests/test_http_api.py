"""The HTTP server API, end to end: a real uvicorn server driven by ``cent`` (Centrifugo's Python
client, unchanged) and, for the exact wire shapes, by ``httpx``; effects are observed by raw
Centrifuge-protocol WebSocket clients.

Every wait is bounded; nothing sleeps to synchronise. Where a test must show that something did
*not* arrive, it publishes a later marker on the same path and checks the marker comes next.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent.dto import Disconnect as CentDisconnect
from cent.dto import StreamPosition as CentStreamPosition
from cent.exceptions import CentApiResponseError, CentTransportError, CentUnauthorizedError
from fastapi import FastAPI, WebSocket
from servers import running_server
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from wsclient import ProtocolClient

from fastapi_realtime import (
    ChannelOptions,
    Hub,
    HubSettings,
    JWTAuth,
    MemoryBroker,
    Publication,
    PublishOptions,
    StreamPosition,
)
from fastapi_realtime.idempotency import IdempotencyCache

WAIT = 5.0
"""Upper bound of every single wait, in seconds."""

KEY = "test-api-key"
SECRET = "fastapi-realtime-test-secret-0123456789abcdef"
NAMESPACES = {
    "": ChannelOptions(),
    "chat": ChannelOptions(history_size=10, presence=True),
    "news": ChannelOptions(history_size=10),
}


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


@dataclass
class Api:
    hub: Hub
    base: str
    """``http://127.0.0.1:<port>``."""
    cent: AsyncClient
    http: httpx.AsyncClient
    """Sends the right key; for requests ``cent`` cannot make or replies it cannot show."""

    @contextlib.asynccontextmanager
    async def client(self, user: str, *channels: str) -> AsyncIterator[tuple[ProtocolClient, str]]:
        """A protocol client connected as ``user`` and subscribed to ``channels``; and its client id."""
        ws_url = self.base.replace("http://", "ws://") + "/connection/websocket"
        async with ProtocolClient.connected(ws_url, timeout=WAIT) as ws:
            reply = await ws.request({"id": 1, "connect": {"token": token(user)}})
            for channel in channels:
                assert "error" not in await ws.command("subscribe", {"channel": channel})
            yield ws, reply["connect"]["client"]

    async def post(self, method: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        response = await self.http.post(f"/api/{method}", json=body, **kwargs)
        return response.status_code, response.json()


@contextlib.asynccontextmanager
async def serve_api(broker: MemoryBroker | None = None, **settings: Any) -> AsyncIterator[Api]:
    """The hub's protocol endpoint, its server API, and a tutorial-API echo at ``/echo/{user}``."""
    settings.setdefault("namespaces", NAMESPACES)
    hub = Hub(HubSettings(ping_interval=0, **settings), broker=broker, auth=JWTAuth(secret=SECRET))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path="/connection/uni_websocket"))

    @app.websocket("/echo/{user}")
    async def echo(websocket: WebSocket, user: str) -> None:
        async with hub.connection(websocket, user=user) as conn:
            async for text in conn.iter_text():
                await conn.send_text(text)

    app.include_router(hub.api_router(api_key=KEY))
    async with running_server(app) as server:
        cent = AsyncClient(f"{server.http_url}/api", KEY, timeout=WAIT)
        try:
            async with httpx.AsyncClient(base_url=server.http_url, headers={"X-API-Key": KEY}, timeout=WAIT) as http:
                yield Api(hub, server.http_url, cent, http)
        finally:
            await cent.close()


async def next_pub(ws: ProtocolClient) -> dict[str, Any]:
    push = await ws.next_push()
    assert "pub" in push, push
    pub: dict[str, Any] = push["pub"]
    return pub


# -- every method through cent ------------------------------------------------------------


async def test_a_publish_through_cent_reaches_a_websocket_subscriber() -> None:
    async with serve_api() as api, api.client("alice", "chat:room") as (ws, _):
        result = await api.cent.publish(PublishRequest(channel="chat:room", data={"text": "hi"}, tags={"k": "v"}))
        pub = await next_pub(ws)
        assert pub["data"] == {"text": "hi"}
        assert pub["tags"] == {"k": "v"}
        assert pub["offset"] == result.offset == 1
        assert result.epoch == (await api.hub.history("chat:room", limit=0)).position.epoch


async def test_broadcast_publishes_into_each_channel_and_reports_each_outcome() -> None:
    async with serve_api() as api, api.client("alice", "chat:a", "news:b") as (ws, _):
        result = await api.cent.broadcast(BroadcastRequest(channels=["chat:a", "news:b", "nope:c", ""], data=7))
        outcomes = [
            (r.result.offset if r.result else None, r.error.code if r.error else None) for r in result.responses
        ]
        assert outcomes == [(1, None), (1, None), (None, 102), (None, 107)]
        assert {(await ws.next_push())["channel"] for _ in range(2)} == {"chat:a", "news:b"}


async def test_subscribe_and_unsubscribe_move_every_connection_of_a_user() -> None:
    async with serve_api() as api, api.client("alice") as (ws, _):
        await api.cent.subscribe(SubscribeRequest(user="alice", channel="chat:x"))
        push = await ws.next_push()
        assert push["channel"] == "chat:x" and "subscribe" in push
        await api.cent.publish(PublishRequest(channel="chat:x", data=1))
        assert (await next_pub(ws))["data"] == 1

        await api.cent.unsubscribe(UnsubscribeRequest(user="alice", channel="chat:x"))
        assert await ws.next_push() == {
            "channel": "chat:x",
            "unsubscribe": {"code": 2000, "reason": "server unsubscribe"},
        }


async def test_subscribe_and_unsubscribe_can_target_one_client_of_a_user() -> None:
    async with serve_api() as api, api.client("alice") as (first, first_id), api.client("alice") as (second, _):
        await api.cent.subscribe(SubscribeRequest(user="alice", channel="chat:one", client=first_id))
        await api.cent.subscribe(SubscribeRequest(user="alice", channel="chat:all"))
        assert [(await first.next_push())["channel"] for _ in range(2)] == ["chat:one", "chat:all"]
        assert (await second.next_push())["channel"] == "chat:all"  # chat:one did not come first

        await api.cent.unsubscribe(UnsubscribeRequest(user="alice", channel="chat:all", client=first_id))
        assert "unsubscribe" in await first.next_push()
        await api.cent.publish(PublishRequest(channel="chat:all", data="marker"))
        assert (await next_pub(second))["data"] == "marker"  # still subscribed


async def test_disconnect_closes_a_users_connections_with_the_code_given_sparing_the_whitelist() -> None:
    async with serve_api() as api, api.client("alice", "chat:r") as (first, _), api.client("alice") as (second, kept):
        request = DisconnectRequest(
            user="alice", whitelist=[kept], disconnect=CentDisconnect(code=4501, reason="go away")
        )
        await api.cent.disconnect(request)
        _, code, reason = await first.closed_with_reason()
        assert (code, reason) == (4501, "go away")

        await api.cent.disconnect(DisconnectRequest(user="alice", client=kept))
        _, code = await second.closed()
        assert code == 3503


async def test_refresh_expires_a_connection_now_or_at_a_new_time() -> None:
    async with serve_api(expired_close_delay=0.1) as api:
        async with api.client("alice") as (ws, _):
            await api.cent.refresh(RefreshRequest(user="alice", expired=True))
            _, code = await ws.closed()
            assert code == 3005
        async with api.client("bob") as (ws, bob):
            # The token said one hour; the API says (about) now: closed once the grace delay passes.
            await api.cent.refresh(RefreshRequest(user="bob", client=bob, expire_at=int(time.time()) + 1))
            _, code = await ws.closed()
            assert code == 3005


async def test_refresh_with_a_later_expire_at_tells_a_unidirectional_client() -> None:
    async with serve_api() as api, connect(api.base.replace("http://", "ws://") + "/connection/uni_websocket") as ws:
        await ws.send(json.dumps({"token": token("dora")}))
        async with asyncio.timeout(WAIT):
            assert "connect" in json.loads(await ws.recv())
        await api.cent.refresh(RefreshRequest(user="dora", expire_at=int(time.time()) + 600))
        async with asyncio.timeout(WAIT):
            refresh = json.loads(await ws.recv())["refresh"]
        assert refresh["expires"] is True and 590 <= refresh["ttl"] <= 600


async def test_a_tutorial_connection_takes_expired_but_keeps_its_own_expiry() -> None:
    async with serve_api() as api, connect(api.base.replace("http://", "ws://") + "/echo/carol") as ws:
        await ws.send("first")
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "first"
        await api.cent.refresh(RefreshRequest(user="carol", expire_at=int(time.time()) + 1))
        await ws.send("still open")
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == "still open"
        await api.cent.refresh(RefreshRequest(user="carol", expired=True))
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 3005


async def test_presence_and_presence_stats() -> None:
    async with serve_api() as api, api.client("alice", "chat:p") as (_, alice), api.client("bob", "chat:p") as (_, bob):
        presence = await api.cent.presence(PresenceRequest(channel="chat:p"))
        assert {client: info.user for client, info in presence.presence.items()} == {alice: "alice", bob: "bob"}
        stats = await api.cent.presence_stats(PresenceStatsRequest(channel="chat:p"))
        assert (stats.num_clients, stats.num_users) == (2, 2)

        with pytest.raises(CentApiResponseError) as refused:
            await api.cent.presence(PresenceRequest(channel="news:p"))
        assert refused.value.code == 108


async def test_history_pages_and_history_remove_keeps_the_position() -> None:
    async with serve_api() as api:
        for n in range(3):
            await api.cent.publish(PublishRequest(channel="news:h", data={"n": n}))
        everything = await api.cent.history(HistoryRequest(channel="news:h", limit=-1))
        assert [p.data for p in everything.publications] == [{"n": 0}, {"n": 1}, {"n": 2}]
        position_only = await api.cent.history(HistoryRequest(channel="news:h"))
        assert (position_only.publications, position_only.offset) == ([], 3)
        since = CentStreamPosition(offset=1, epoch=everything.epoch)
        after = await api.cent.history(HistoryRequest(channel="news:h", limit=10, since=since))
        assert [p.offset for p in after.publications] == [2, 3]
        newest = await api.cent.history(HistoryRequest(channel="news:h", limit=1, reverse=True))
        assert [p.data for p in newest.publications] == [{"n": 2}]

        await api.cent.history_remove(HistoryRemoveRequest(channel="news:h"))
        emptied = await api.cent.history(HistoryRequest(channel="news:h", limit=-1))
        assert (emptied.publications, emptied.offset, emptied.epoch) == ([], 3, everything.epoch)

        with pytest.raises(CentApiResponseError) as refused:
            await api.cent.history(HistoryRequest(channel="plain", limit=1))
        assert refused.value.code == 108
        with pytest.raises(CentApiResponseError) as refused:
            await api.cent.history(HistoryRequest(channel="news:h", since=CentStreamPosition(offset=1, epoch="x")))
        assert refused.value.code == 112


async def test_channels_with_counts_and_a_pattern_and_info() -> None:
    async with (
        serve_api() as api,
        api.client("alice", "chat:a", "news:x") as _,
        api.client("bob", "chat:a", "chat:b") as _,
    ):
        channels = await api.cent.channels(ChannelsRequest())
        assert {name: c.num_clients for name, c in channels.channels.items()} == {"chat:a": 2, "chat:b": 1, "news:x": 1}
        chat = await api.cent.channels(ChannelsRequest(pattern="chat:*"))
        assert set(chat.channels) == {"chat:a", "chat:b"}

        [node] = (await api.cent.info(InfoRequest())).nodes
        assert node.uid == api.hub.node_id
        assert (node.num_clients, node.num_users, node.num_channels, node.num_subs) == (2, 2, 3, 4)


async def test_batch_runs_commands_in_order_or_in_parallel() -> None:
    async with serve_api() as api, api.client("alice", "chat:b") as (ws, _):
        commands = [PublishRequest(channel="chat:b", data=n) for n in range(3)]
        replies = (await api.cent.batch(BatchRequest(requests=[*commands, InfoRequest()]))).replies
        assert [r.offset for r in replies[:3]] == [1, 2, 3]
        assert [(await next_pub(ws))["data"] for _ in range(3)] == [0, 1, 2]
        assert replies[3].nodes[0].num_clients == 1

        parallel = BatchRequest(requests=[*commands, PresenceStatsRequest(channel="chat:b")], parallel=True)
        replies = (await api.cent.batch(parallel)).replies
        assert sorted(r.offset for r in replies[:3]) == [4, 5, 6]
        assert replies[3].num_clients == 1
        assert sorted([(await next_pub(ws))["data"] for _ in range(3)]) == [0, 1, 2]


async def test_batch_reports_each_commands_error_in_its_place() -> None:
    async with serve_api() as api:
        status, body = await api.post(
            "batch",
            {
                "commands": [
                    {"publish": {"channel": "chat:e", "data": 1}},
                    {"publish": {"channel": "nope:e", "data": 1}},
                    {"publish": {"channel": 5, "data": 1}},
                    {"rpc": {"method": "x"}},
                    {"publish": {}, "info": {}},
                    {"info": {}},
                ]
            },
        )
        assert status == 200
        replies = body["replies"]
        assert replies[0]["publish"]["offset"] == 1
        assert replies[1] == {"error": {"code": 102, "message": "unknown channel"}}
        assert replies[2]["error"]["code"] == 107 and "channel" in replies[2]["error"]["message"]
        assert replies[3] == {"error": {"code": 104, "message": "method not found: rpc"}}
        assert replies[4]["error"]["code"] == 107
        assert replies[5]["info"]["nodes"][0]["uid"] == api.hub.node_id


class FailingBroker(MemoryBroker):
    """A memory broker whose publish fails, as a broker that lost its server would."""

    async def publish(self, channel: str, pub: Publication, opts: PublishOptions) -> StreamPosition:
        raise ConnectionError("broker unreachable")


async def test_a_failing_broker_gives_error_100_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async with serve_api(broker=FailingBroker()) as api:
        status, reply = await api.post("publish", {"channel": "chat:f", "data": 1})
        assert (status, reply) == (200, {"error": {"code": 100, "message": "internal server error"}})
        with pytest.raises(CentApiResponseError) as failed:
            await api.cent.publish(PublishRequest(channel="chat:f", data=1, idempotency_key="k"))
        assert failed.value.code == 100
    assert any(r.name == "fastapi_realtime.api" and r.exc_info for r in caplog.records)


# -- the key ------------------------------------------------------------------------------


async def test_a_wrong_or_missing_key_gets_401_and_publishes_nothing() -> None:
    async with serve_api() as api, api.client("alice", "chat:k") as (ws, _):
        wrong = AsyncClient(f"{api.base}/api", "not-the-key", timeout=WAIT)
        try:
            with pytest.raises(CentUnauthorizedError):
                await wrong.publish(PublishRequest(channel="chat:k", data="wrong key"))
        finally:
            await wrong.close()
        async with httpx.AsyncClient(base_url=api.base, timeout=WAIT) as anonymous:
            body = {"channel": "chat:k", "data": "no key"}
            for headers in ({}, {"Authorization": "apikey nope"}, {"Authorization": f"Bearer {KEY}"}):
                response = await anonymous.post("/api/publish", json=body, headers=headers)
                assert response.status_code == 401
                assert response.json()["error"]["code"] == 101
            response = await anonymous.post("/api/publish", json=body, params={"api_key": KEY})
            assert response.status_code == 401  # no key in the URL, where logs would keep it
            response = await anonymous.post("/api/publish", content=b"not json", headers={"X-API-Key": "x"})
            assert response.status_code == 401  # the key is checked before the body is read

            # Authorization: apikey <key> is the other accepted form.
            ok = await anonymous.post(
                "/api/publish", json={**body, "data": "marker"}, headers={"Authorization": f"apikey {KEY}"}
            )
            assert ok.json() == {"result": {"offset": 1, "epoch": ok.json()["result"]["epoch"]}}
        pub = await next_pub(ws)
        assert (pub["data"], pub["offset"]) == ("marker", 1)


def test_api_router_refuses_an_empty_key() -> None:
    with pytest.raises(ValueError):
        Hub().api_router(api_key="")


# -- publish options ----------------------------------------------------------------------


async def test_a_retried_publish_with_the_same_idempotency_key_is_delivered_once() -> None:
    async with serve_api() as api, api.client("alice", "chat:i", "news:i") as (ws, _):
        request = PublishRequest(channel="chat:i", data="once", idempotency_key="k1")
        first = await api.cent.publish(request)
        again = await api.cent.publish(request)
        racing = await asyncio.gather(*(api.cent.publish(request) for _ in range(3)))
        assert {(r.offset, r.epoch) for r in [again, *racing]} == {(first.offset, first.epoch)}
        # The key acts per channel: the same key elsewhere publishes.
        assert (
            await api.cent.publish(PublishRequest(channel="news:i", data="other", idempotency_key="k1"))
        ).offset == 1
        await api.cent.publish(PublishRequest(channel="chat:i", data="marker"))
        assert [(await next_pub(ws))["data"] for _ in range(3)] == ["once", "other", "marker"]

        # Broadcast honours the key per channel too.
        result = await api.cent.broadcast(
            BroadcastRequest(channels=["chat:i", "news:i"], data="b", idempotency_key="k1")
        )
        assert [r.result.offset for r in result.responses if r.result] == [first.offset, 1]


async def test_idempotency_keys_over_the_limit_are_forgotten_oldest_first() -> None:
    async with serve_api(idempotency_max_keys=2) as api:
        offsets = []
        for key in ["a", "b", "a", "c", "a"]:  # "c" pushes "a" out: its next retry publishes again
            result = await api.cent.publish(PublishRequest(channel="news:m", data=key, idempotency_key=key))
            offsets.append(result.offset)
        assert offsets == [1, 2, 1, 3, 4]


async def test_idempotency_window_expires_keys_and_failures_are_not_remembered() -> None:
    now = [0.0]
    cache: IdempotencyCache[int] = IdempotencyCache(window=10.0, max_keys=100, clock=lambda: now[0])
    calls = 0

    async def call() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await cache.run("k", call) == 1
    now[0] = 9.9
    assert await cache.run("k", call) == 1
    now[0] = 10.0
    assert await cache.run("k", call) == 2

    async def failing() -> int:
        raise RuntimeError("broker down")

    with pytest.raises(RuntimeError):
        await cache.run("f", failing)
    assert await cache.run("f", call) == 3
    assert len(cache) == 2


async def test_a_retry_waiting_on_a_cancelled_first_call_runs_it_itself() -> None:
    cache: IdempotencyCache[str] = IdempotencyCache(window=10.0, max_keys=100)
    started, never = asyncio.Event(), asyncio.Event()

    async def stuck() -> str:
        started.set()
        await never.wait()
        return "first"

    async def retry() -> str:
        return "retry"

    first = asyncio.create_task(cache.run("k", stuck))
    async with asyncio.timeout(WAIT):
        await started.wait()
    second = asyncio.create_task(cache.run("k", retry))
    # Tasks step in FIFO order: the retry parks on the first call before the cancel lands.
    asyncio.get_running_loop().call_soon(first.cancel)
    async with asyncio.timeout(WAIT):
        assert await second == "retry"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_skip_history_delivers_without_keeping() -> None:
    async with serve_api() as api, api.client("alice", "news:s") as (ws, _):
        result = await api.cent.publish(PublishRequest(channel="news:s", data="live only", skip_history=True))
        assert (result.offset, result.epoch) == (0, "")
        assert (await next_pub(ws))["data"] == "live only"
        history = await api.cent.history(HistoryRequest(channel="news:s", limit=-1))
        assert (history.publications, history.offset) == ([], 0)


async def test_b64data_must_decode_to_json() -> None:
    async with serve_api() as api, api.client("alice", "chat:b64") as (ws, _):
        encoded = base64.b64encode(b'{"binary": false}').decode()
        await api.cent.publish(PublishRequest(channel="chat:b64", data=None, b64data=encoded))
        assert (await next_pub(ws))["data"] == {"binary": False}

        cases = {
            base64.b64encode(b"\x00\xff").decode(): "b64data must decode to JSON text",
            "%%%": "b64data is not valid base64",
        }
        for b64data, message in cases.items():
            with pytest.raises(CentApiResponseError) as refused:
                await api.cent.publish(PublishRequest(channel="chat:b64", data=None, b64data=b64data))
            assert refused.value.code == 107 and message in refused.value.message
        status, body = await api.post("publish", {"channel": "chat:b64", "data": 1, "b64data": encoded})
        assert (status, body["error"]["code"]) == (200, 107)
        assert "not both" in body["error"]["message"]


# -- bad input ----------------------------------------------------------------------------


async def test_bad_input_gets_centrifugo_error_shapes() -> None:
    async with serve_api(api_max_body_bytes=3000, api_max_commands=2) as api:
        http = api.http

        # A body that is not a JSON object: HTTP 400 (as Centrifugo), with the error shape.
        # Strict JSON: no NaN, no overflowing numbers, no lone surrogates, nesting within 1024 levels.
        strict = [b'{"channel": "chat:x", "data": NaN}', b'{"channel": "chat:x", "data": 1e999}']
        strict += [b'{"channel": "chat:x", "data": "\\ud800"}', b"[" * 1100 + b"]" * 1100, b"\xff"]
        for content in [b"{not json", b"[1, 2]", b"", *strict]:
            response = await http.post("/api/publish", content=content, headers={"Content-Type": "application/json"})
            assert response.status_code == 400, content
            assert response.json()["error"]["code"] == 107
        with pytest.raises(CentTransportError) as transport:
            await api.cent._session.make_request(KEY, "publish", [])  # type: ignore[arg-type]
        assert transport.value.status_code == 400

        # Fields missing, of the wrong type, or unknown: error 107 naming them, in a 200 reply.
        expectations = {
            "publish": [
                ({"data": 1}, "channel: Field required"),
                ({"channel": 5, "data": 1}, "channel: Input should be a valid string"),
                ({"channel": "chat:x", "data": 1, "tags": {"a": 1}}, "tags.a: Input should be a valid string"),
                ({"channel": "chat:x", "data": 1, "delta": True}, "delta: not supported by this server"),
                ({"channel": "chat:x"}, "data required"),
                ({"channel": "", "data": 1}, "channel required"),
                ({"channel": "bad channel", "data": 1}, "channel name may only contain"),
            ],
            "subscribe": [({"user": "u", "channel": "chat:x", "info": {}}, "info: not supported by this server")],
            "disconnect": [({"user": "u", "disconnect": {"code": 1000}}, "disconnect.code must be 3000-4999")],
            "refresh": [
                ({"user": "u", "expire_at": -1}, "expire_at: Input should be greater than or equal to 0"),
                ({"user": "u", "expire_at": 2**63}, "expire_at: Input should be less than or equal to"),
            ],
            "history": [({"channel": "news:x", "since": {"offset": -1}}, "since.offset: Input should be greater")],
            "broadcast": [({"channels": ["a", "b", "c"], "data": 1}, "more than 2 channels")],
        }
        for method, cases in expectations.items():
            for body, message in cases:
                status, reply = await api.post(method, body)
                assert status == 200, (method, body)
                assert reply["error"]["code"] == 107, (method, body, reply)
                assert message in reply["error"]["message"], (method, body, reply)

        status, reply = await api.post("publish", {"channel": "nope:x", "data": 1})
        assert (status, reply) == (200, {"error": {"code": 102, "message": "unknown channel"}})
        with pytest.raises(CentApiResponseError) as unknown:
            await api.cent.publish(PublishRequest(channel="nope:x", data=1))
        assert unknown.value.code == 102

        # Limits: the body size (413) and the commands of a batch (400: a batch reply has no error field).
        response = await http.post("/api/publish", json={"channel": "chat:x", "data": "x" * 4000})
        assert (response.status_code, response.json()["error"]["code"]) == (413, 107)
        status, reply = await api.post("batch", {"commands": [{"info": {}}] * 3})
        assert (status, reply["error"]["code"]) == (400, 107)
        status, reply = await api.post("batch", {"commands": "all"})
        assert (status, reply["error"]["code"]) == (400, 107)
        assert (await api.hub.history("chat:x", limit=0)).position.offset == 0  # nothing was published


async def test_the_openapi_docs_show_the_typed_models_and_the_key() -> None:
    hub = Hub()
    app = FastAPI()
    app.include_router(hub.api_router(api_key=KEY))
    schema = app.openapi()
    publish = schema["paths"]["/api/publish"]["post"]
    assert publish["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PublishRequest"
    }
    assert publish["security"] == [{"APIKeyHeader": []}]
    assert {"200", "400", "401", "413"} <= set(publish["responses"])
    assert {"PublishRequest", "BroadcastRequest", "HistoryResult", "BatchRequest"} <= set(
        schema["components"]["schemas"]
    )
    methods = {path.removeprefix("/api/") for path in schema["paths"]}
    assert methods == {
        "publish", "broadcast", "subscribe", "unsubscribe", "disconnect", "refresh", "presence",
        "presence_stats", "history", "history_remove", "channels", "info", "batch",
    }  # fmt: skip
