"""The Protobuf encoding driven by the official Python SDK (centrifuge-python with
``use_protobuf=True``) over a real uvicorn server, beside JSON clients on the same endpoint.

In Protobuf mode the SDK carries payloads as bytes: JSON published by the server arrives as
its JSON bytes, and bytes published by a Protobuf client reach JSON clients as JSON when they
are JSON, while a JSON client that would receive non-JSON bytes is disconnected with 3506
(and nobody else is). Waits are bounded; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import orjson
import pytest
from centrifuge import ClientState, StreamPosition
from centrifuge import ReplyError as SDKReplyError
from test_sdk_python import (
    SDK_CONNECT_CALLED,
    SDK_TRANSPORT_CLOSED,
    WAIT,
    _drop_transport,
    connected,
    hs256,
    make_hub,
    serve,
    subscribed,
    take_publications,
)

from fastapi_realtime import PublishContext, RPCContext


async def test_protobuf_client_connects_subscribes_publishes_and_reads_presence_and_history() -> None:
    hub = make_hub()
    received: list[Any] = []

    @hub.on_publish
    async def on_publish(ctx: PublishContext) -> None:
        received.append(ctx.data)

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack, token=hs256("alice", info={"name": "Alice"}), use_protobuf=True)
        ctx = await events.next("connected")
        assert ctx.client == client.client_id and ctx.version.startswith("fastapi-realtime")
        sub, sub_events = await subscribed(client, "chat:pb")

        await hub.publish("chat:pb", {"n": 1})
        pub = (await sub_events.next("publication")).pub
        assert (pub.data, pub.offset) == (b'{"n":1}', 1)

        await sub.publish(b'{"from":"client"}')
        pub = (await sub_events.next("publication")).pub
        assert (orjson.loads(pub.data), pub.offset, pub.info.user) == ({"from": "client"}, 2, "alice")
        await sub.publish(b"\x00\xffbinary")
        assert (await sub_events.next("publication")).pub.data == b"\x00\xffbinary"
        assert received == [{"from": "client"}, b"\x00\xffbinary"]  # hooks see JSON values, or bytes

        presence = await sub.presence()
        info = presence.clients[client.client_id]
        assert (info.user, orjson.loads(info.conn_info)) == ("alice", {"name": "Alice"})
        stats = await sub.presence_stats()
        assert (stats.num_clients, stats.num_users) == (1, 1)

        history = await sub.history(limit=-1)
        assert [p.data for p in history.publications] == [b'{"n":1}', b'{"from":"client"}', b"\x00\xffbinary"]
        since = await sub.history(limit=-1, since=StreamPosition(offset=1, epoch=history.epoch))
        assert [p.offset for p in since.publications] == [2, 3]
        reverse = await sub.history(limit=1, reverse=True)
        assert [p.offset for p in reverse.publications] == [3]
        with pytest.raises(SDKReplyError) as exc_info:
            await sub.history(limit=-1, since=StreamPosition(offset=1, epoch="another-epoch"))
        assert exc_info.value.code == 112


async def test_protobuf_rpc_and_errors() -> None:
    hub = make_hub()

    @hub.rpc("add")
    async def add(ctx: RPCContext, data: Any) -> Any:
        return {"sum": data["a"] + data["b"], "user": ctx.user}

    @hub.rpc("echo")
    async def echo(ctx: RPCContext, data: Any) -> Any:
        return {"got": data.hex()}  # non-JSON bytes reach the handler as bytes

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"), use_protobuf=True)
        result = await client.rpc("add", b'{"a":2,"b":40}')
        assert orjson.loads(result.data) == {"sum": 42, "user": "alice"}
        result = await client.rpc("echo", b"\x01\x02")
        assert orjson.loads(result.data) == {"got": "0102"}
        with pytest.raises(SDKReplyError) as exc_info:
            await client.rpc("missing", b"{}")
        assert exc_info.value.code == 104
        sub, _ = await subscribed(client, "lobby")
        with pytest.raises(SDKReplyError) as exc_info:
            await sub.history(limit=10)
        assert (exc_info.value.code, exc_info.value.message) == (108, "not available")
        assert client.state == ClientState.CONNECTED


async def test_json_and_protobuf_clients_share_channels_and_binary_data_disconnects_json_readers_only() -> None:
    hub = make_hub()
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        pb_client, _ = await connected(url, stack, token=hs256("pb"), use_protobuf=True)
        json_client, json_events = await connected(url, stack, token=hs256("js"))
        bystander, _ = await connected(url, stack, token=hs256("other"))
        pb_sub, pb_events = await subscribed(pb_client, "chat:mixed")
        json_sub, json_sub_events = await subscribed(json_client, "chat:mixed")
        _, other_events = await subscribed(bystander, "chat:other")

        await json_sub.publish({"text": "hi"})
        assert (await pb_events.next("publication")).pub.data == b'{"text":"hi"}'
        assert (await json_sub_events.next("publication")).pub.data == {"text": "hi"}
        await pb_sub.publish(b'{"text":"hello"}')
        assert (await json_sub_events.next("publication")).pub.data == {"text": "hello"}
        assert (await pb_events.next("publication")).pub.data == b'{"text":"hello"}'

        await pb_sub.publish(b"\x89PNG")
        assert (await pb_events.next("publication")).pub.data == b"\x89PNG"
        gone = await json_events.next("disconnected")
        assert gone.code == 3506  # terminal: the SDK does not reconnect
        assert json_client.state == ClientState.DISCONNECTED

        await hub.publish("chat:other", {"still": "served"})
        assert (await other_events.next("publication")).pub.data == {"still": "served"}
        await hub.publish("chat:mixed", {"n": 2})
        assert (await pb_events.next("publication")).pub.data == b'{"n":2}'


async def test_protobuf_recovery_after_connection_loss() -> None:
    hub = make_hub()
    channel = "chat:pb-recover"
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, events = await connected(url, stack, token=hs256("alice"), use_protobuf=True)
        _, sub_events = await subscribed(client, channel, recoverable=True, positioned=True)
        first = await sub_events.next("subscribed")
        assert (first.recoverable, first.positioned) == (True, True)
        epoch = first.stream_position.epoch
        for n in range(1, 3):
            await hub.publish(channel, {"n": n})
        assert [p.offset for p in await take_publications(sub_events, 2)] == [1, 2]

        events.hold_reconnect = asyncio.Event()
        try:
            await _drop_transport(client)
            assert (await events.next("connecting")).code == SDK_CONNECT_CALLED
            assert (await events.next("connecting")).code == SDK_TRANSPORT_CLOSED
            async with asyncio.timeout(WAIT):
                await hub.wait_idle()
            for n in range(3, 6):
                await hub.publish(channel, {"n": n})
        finally:
            events.hold_reconnect.set()

        again = await sub_events.next("subscribed")
        assert (again.was_recovering, again.recovered) == (True, True)
        assert (again.stream_position.offset, again.stream_position.epoch) == (2, epoch)
        recovered = await take_publications(sub_events, 3)
        assert [json.loads(p.data)["n"] for p in recovered] == [3, 4, 5]
        await hub.publish(channel, {"n": 6})
        assert (await sub_events.next("publication")).pub.offset == 6
