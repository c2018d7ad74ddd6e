"""Bad input from one client costs that client a command or its connection, and nobody else anything.

Each test runs a real server, a well-behaved *watcher* subscribed to ``chat:watch``, and a raw
WebSocket client that sends the bad input. It asserts the exact reply or close code the bad
client gets, then that the watcher still receives every publication and gets answers, and,
on the way out, that the server logged no error (no traceback) while all this happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from namespaces import CHAT
from servers import running_server_logging_no_errors
from wsclient import ProtocolClient

from fastapi_realtime import ChannelOptions, Hub, HubSettings
from fastapi_realtime.channels import ALLOWED_CHARACTERS
from fastapi_realtime.session import Session

NAMESPACES = {
    "": ChannelOptions(),
    "chat": CHAT,
}
WATCHED = "chat:watch"
WAIT = 5.0
"""Seconds any single wait may take before the test fails."""

CONNECT = '{"id":1,"connect":{"name":"js"}}'
BAD_REQUEST = 3501


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


class RawClient(ProtocolClient):
    """The shared raw client (it never answers pings: a pong is bad input here), with the
    checked steps these tests repeat."""

    async def connect(self) -> None:
        reply = await self.request(CONNECT)
        assert reply["id"] == 1
        assert reply["connect"]["client"]

    async def subscribe(self, cmd_id: int, channel: str) -> None:
        assert await self.request(f'{{"id":{cmd_id},"subscribe":{{"channel":"{channel}"}}}}') == {
            "id": cmd_id,
            "subscribe": {},
        }

    async def ping(self, cmd_id: int) -> None:
        """A round trip that proves the connection is open and served."""
        assert await self.request(f'{{"id":{cmd_id},"ping":{{}}}}') == {"id": cmd_id, "ping": {}}


@dataclass
class Served:
    hub: Hub
    url: str
    watcher: RawClient
    published: int = 0
    watcher_ids: int = field(default=100)

    def client(self) -> contextlib.AbstractAsyncContextManager[RawClient]:
        return RawClient.connected(self.url, timeout=WAIT)

    async def connected_client(self, stack: contextlib.AsyncExitStack, *, watch: bool = True) -> RawClient:
        """A client that connected and (with ``watch``) subscribed to the watched channel too."""
        client = await stack.enter_async_context(self.client())
        await client.connect()
        if watch:
            await client.subscribe(2, WATCHED)
        return client

    async def assert_others_unaffected(self) -> None:
        """The watcher receives the next publication, in order, and its commands are answered."""
        self.published += 1
        position = await self.hub.publish(WATCHED, {"n": self.published})
        assert position.offset == self.published
        push = (await self.watcher.message())["push"]
        assert push["channel"] == WATCHED
        assert (push["pub"]["data"], push["pub"]["offset"]) == ({"n": self.published}, self.published)
        self.watcher_ids += 1
        await self.watcher.ping(self.watcher_ids)


@contextlib.asynccontextmanager
async def serving(caplog: pytest.LogCaptureFixture, **overrides: Any) -> AsyncIterator[Served]:
    """A hub behind a real server, with a watcher connected and subscribed to ``chat:watch``.

    On exit (after the server stopped) asserts that nothing was logged at ERROR or above.
    """
    settings: dict[str, Any] = {"allow_anonymous": True, "namespaces": NAMESPACES, "ping_interval": 0}
    settings.update(overrides)
    hub = Hub(HubSettings(**settings))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server_logging_no_errors(app, caplog) as server:
        url = server.ws_url + "/connection/websocket"
        async with RawClient.connected(url, timeout=WAIT) as watcher:
            await watcher.connect()
            await watcher.subscribe(2, WATCHED)
            yield Served(hub, url, watcher)


# -- inputs that end the connection ---------------------------------------------------

CLOSING_AFTER_CONNECT = {
    "invalid JSON": "{not json",
    "truncated JSON": '{"id":3,"ping":{}',
    "two objects on one line": '{"id":3,"ping":{}}{"id":4,"ping":{}}',
    "line that is not an object": "[]",
    "bad line after a good one": '{"id":3,"ping":{}}\nnull',
    "empty frame": "",
    "blank frame": "\r\n \n",
    "command with id 0": '{"id":0,"subscribe":{"channel":"chat:other"}}',
    "command without id": '{"publish":{"channel":"chat:other","data":1}}',
    "unknown method without id": '{"subscribe_all":{}}',
    "id without method": '{"id":3}',
    "negative id": '{"id":-3,"ping":{}}',
    "id over uint32": '{"id":4294967296,"ping":{}}',
    "boolean id": '{"id":true,"ping":{}}',
    "string id": '{"id":"3","ping":{}}',
    "deeply nested data": f'{{"id":3,"publish":{{"channel":"chat:other","data":{nested(10_000)}}}}}',
    "second connect": '{"id":3,"connect":{}}',
    "pong with no ping outstanding": "{}",
}


@pytest.mark.parametrize("frame", CLOSING_AFTER_CONNECT.values(), ids=CLOSING_AFTER_CONNECT.keys())
async def test_broken_frame_after_connect_closes_with_3501(caplog: pytest.LogCaptureFixture, frame: str) -> None:
    async with serving(caplog) as served, contextlib.AsyncExitStack() as stack:
        bad = await served.connected_client(stack)
        await bad.send(frame)
        assert await bad.closed() == ([], BAD_REQUEST)
        await served.assert_others_unaffected()


CLOSING_BEFORE_CONNECT = {
    "invalid JSON": "{not json",
    "subscribe before connect": '{"id":1,"subscribe":{"channel":"chat:watch"}}',
    "legacy ping before connect": '{"id":1,"ping":{}}',
    "unknown method before connect": '{"id":1,"subscribe_all":{}}',
    "wrong types before connect": '{"id":1,"subscribe":{"channel":5}}',
    "send before connect": '{"send":{"data":1}}',
    "pong before connect": "{}",
    "connect with id 0": '{"connect":{}}',
    "subscribe in the frame before connect": '{"id":1,"subscribe":{"channel":"chat:x"}}\n' + CONNECT,
}


@pytest.mark.parametrize("frame", CLOSING_BEFORE_CONNECT.values(), ids=CLOSING_BEFORE_CONNECT.keys())
async def test_anything_but_connect_first_closes_with_3501(caplog: pytest.LogCaptureFixture, frame: str) -> None:
    async with serving(caplog) as served, served.client() as bad:
        await bad.send(frame)
        assert await bad.closed() == ([], BAD_REQUEST)
        await served.assert_others_unaffected()


@pytest.mark.parametrize(
    "frame",
    [b"\xff\xfe\x00\x13garbage\x80", bytes(range(256)), b"\x00" * 1000],
    ids=["garbage", "every byte", "zeros"],
)
async def test_binary_garbage_closes_with_3501(caplog: pytest.LogCaptureFixture, frame: bytes) -> None:
    async with serving(caplog) as served, contextlib.AsyncExitStack() as stack:
        bad = await served.connected_client(stack)
        await bad.send(frame)
        assert await bad.closed() == ([], BAD_REQUEST)
        await served.assert_others_unaffected()


async def test_pong_before_the_first_ping_closes_with_3501_even_when_pings_are_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(caplog, ping_interval=25) as served, served.client() as bad:
        reply = await bad.request(CONNECT)
        assert (reply["connect"]["ping"], reply["connect"]["pong"]) == (25, True)
        await bad.send("{}")
        assert await bad.closed() == ([], BAD_REQUEST)
        await served.assert_others_unaffected()


async def test_commands_before_a_broken_line_in_the_same_frame_are_not_run(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as served, contextlib.AsyncExitStack() as stack:
        bad = await served.connected_client(stack, watch=False)
        await bad.send('{"id":2,"subscribe":{"channel":"chat:watch"}}\n{"id":3,"ping":{}}\n{oops')
        assert await bad.closed() == ([], BAD_REQUEST)
        await served.assert_others_unaffected()


# -- inputs answered with an error reply; the connection stays open -------------------

REPLIED = {
    "unknown method": ('{"id":3,"subscribe_all":{"channel":"x"}}', 104, "method not found"),
    "wrong field type": ('{"id":3,"subscribe":{"channel":42}}', 107, "channel must be a string"),
    "negative offset": (
        '{"id":3,"subscribe":{"channel":"chat:x","offset":-1}}',
        107,
        "offset must be a non-negative integer",
    ),
    "method body not an object": ('{"id":3,"publish":"hello"}', 107, "publish must be an object"),
    "history limit as string": (
        '{"id":3,"history":{"channel":"chat:watch","limit":"10"}}',
        107,
        "limit must be an integer",
    ),
    "bad channel name": (
        '{"id":3,"subscribe":{"channel":"no spaces"}}',
        107,
        f"channel name may only contain {ALLOWED_CHARACTERS}",
    ),
    "empty channel name": ('{"id":3,"subscribe":{}}', 107, "channel required"),
    "unknown namespace": ('{"id":3,"subscribe":{"channel":"sports:1"}}', 102, "unknown channel"),
    "already subscribed": ('{"id":3,"subscribe":{"channel":"chat:watch"}}', 105, "already subscribed"),
    "publish not allowed": ('{"id":3,"publish":{"channel":"lobby","data":1}}', 103, "permission denied"),
    "data nested past the encoder limit": (
        f'{{"id":3,"publish":{{"channel":"chat:watch","data":{nested(300)}}}}}',
        107,
        "Recursion limit reached",
    ),
}


@pytest.mark.parametrize(("frame", "code", "message"), REPLIED.values(), ids=REPLIED.keys())
async def test_bad_command_gets_an_error_reply_and_the_connection_stays(
    caplog: pytest.LogCaptureFixture, frame: str, code: int, message: str
) -> None:
    async with serving(caplog) as served, contextlib.AsyncExitStack() as stack:
        bad = await served.connected_client(stack)
        assert await bad.request(frame) == {"id": 3, "error": {"code": code, "message": message}}
        await bad.ping(4)
        await served.assert_others_unaffected()


async def test_bad_commands_between_good_ones_in_one_frame_are_answered_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving(caplog) as served, contextlib.AsyncExitStack() as stack:
        bad = await served.connected_client(stack, watch=False)
        await bad.send(
            '{"id":2,"ping":{}}\n'
            '{"id":3,"nope":{}}\n'
            '{"id":4,"subscribe":{"channel":5}}\n'
            '{"id":5,"subscribe":{"channel":"chat:watch"}}\n'
            '{"send":{"data":{"ignored":true}}}\n'
            "{}\n"
        )
        # The trailing pong has no ping to answer: the connection ends after the replies.
        assert await bad.closed() == (
            [
                {"id": 2, "ping": {}},
                {"id": 3, "error": {"code": 104, "message": "method not found"}},
                {"id": 4, "error": {"code": 107, "message": "channel must be a string"}},
                {"id": 5, "subscribe": {}},
            ],
            BAD_REQUEST,
        )
        await served.assert_others_unaffected()


# -- limits -----------------------------------------------------------------------------


async def test_frame_over_the_size_limit_closes_with_1009(caplog: pytest.LogCaptureFixture) -> None:
    limit = 1024
    async with serving(caplog, client_max_frame_bytes=limit) as served, contextlib.AsyncExitStack() as stack:
        bad = await served.connected_client(stack, watch=False)
        head, tail = '{"id":2,"publish":{"channel":"chat:big","data":"', '"}}'
        at_limit = head + "x" * (limit - len(head) - len(tail)) + tail
        assert len(at_limit.encode()) == limit
        assert await bad.request(at_limit) == {"id": 2, "publish": {}}
        # Under the limit in characters, over it in UTF-8 bytes.
        over = head.replace('"id":2', '"id":3') + "é" * (limit // 2) + tail
        assert len(over) < limit < len(over.encode())
        await bad.send(over)
        assert await bad.closed() == ([], 1009)
        await served.assert_others_unaffected()


async def test_command_flood_gets_111_then_closes_with_3013(caplog: pytest.LogCaptureFixture) -> None:
    burst = 3
    # The rate is low enough that no token comes back while the test runs.
    async with (
        serving(caplog, client_command_rate=0.001, client_command_burst=burst, client_command_refusals=burst) as served,
        contextlib.AsyncExitStack() as stack,
    ):
        bad = await served.connected_client(stack, watch=False)  # connect spends the first token
        for cmd_id in range(2, 2 + 2 * burst + 1):
            await bad.send(f'{{"id":{cmd_id},"ping":{{}}}}')
        too_many = {"code": 111, "message": "too many requests", "temporary": True}
        assert await bad.closed() == (
            [
                {"id": 2, "ping": {}},
                {"id": 3, "ping": {}},
                {"id": 4, "error": too_many},
                {"id": 5, "error": too_many},
                {"id": 6, "error": too_many},
            ],
            3013,
        )
        # The watcher has its own bucket: connect and subscribe spent two tokens, one is left.
        await served.assert_others_unaffected()


async def test_subscribing_past_the_channel_limit_gets_106(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog, client_channel_limit=2) as served, contextlib.AsyncExitStack() as stack:
        bad = await served.connected_client(stack)  # chat:watch is its first channel
        await bad.subscribe(3, "chat:a")
        assert await bad.request('{"id":4,"subscribe":{"channel":"chat:b"}}') == {
            "id": 4,
            "error": {"code": 106, "message": "limit exceeded"},
        }
        # The limit counts current subscriptions: leaving one makes room again.
        assert await bad.request('{"id":5,"unsubscribe":{"channel":"chat:a"}}') == {"id": 5, "unsubscribe": {}}
        await bad.subscribe(6, "chat:b")
        await served.assert_others_unaffected()


async def test_connection_past_max_connections_is_closed_with_3504(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog, max_connections=2) as served:
        detached = asyncio.Event()

        async def on_closed(session: Session) -> None:
            detached.set()

        served.hub.on_session_closed.append(on_closed)
        async with served.client() as first:
            await first.connect()
            async with served.client() as refused:
                assert await refused.closed() == ([], 3504)
            await first.ping(2)
            await served.assert_others_unaffected()
        # Once the first client is gone its slot is free again.
        async with asyncio.timeout(WAIT):
            await detached.wait()
        async with served.client() as again:
            await again.connect()
            await again.ping(2)
        await served.assert_others_unaffected()
