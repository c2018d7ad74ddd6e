"""The Protobuf encoding over a real uvicorn server, frame by frame: subprotocol negotiation,
batching of binary frames up to ``client_max_batch_bytes``, 3501 for frames that cannot be
read (the other clients carry on), and pings; and, on in-memory transports, that the fan-out
encodes a publication once per encoding.

Commands are built with the project's generated module and read back with it. Every wait is
bounded; nothing sleeps to synchronise; nothing may be logged at ERROR.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fakes import FakeTransport
from fastapi import FastAPI
from google.protobuf import proto
from google.protobuf.message import Message
from servers import running_server_logging_no_errors
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol
from wsclient import ProtocolClient, read_until_closed

from fastapi_realtime import ChannelOptions, Hub, HubSettings
from fastapi_realtime.protocol.codecs import CentrifugeCodec
from fastapi_realtime.protocol.proto import client_pb2 as pb
from fastapi_realtime.protocol.protobuf import ProtobufCodec

WAIT = 5.0
PROTOBUF = Subprotocol("centrifuge-protobuf")
PATH = "/connection/websocket"


@contextlib.asynccontextmanager
async def serving(caplog: pytest.LogCaptureFixture, **settings: Any) -> AsyncIterator[tuple[Hub, str]]:
    settings.setdefault("namespaces", {"": ChannelOptions(), "chat": ChannelOptions(history_size=10)})
    hub = Hub(HubSettings(allow_anonymous=True, **settings))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server_logging_no_errors(app, caplog) as server:
        yield hub, f"{server.ws_url}{PATH}"


def frame(*commands: Message) -> bytes:
    out = io.BytesIO()
    for command in commands:
        proto.serialize_length_prefixed(command, out)
    return out.getvalue()


def read_replies(data: bytes) -> list[pb.Reply]:
    stream = io.BytesIO(data)
    out = []
    while (reply := proto.parse_length_prefixed(pb.Reply, stream)) is not None:
        out.append(reply)
    return out


async def recv_frame(ws: ClientConnection) -> list[pb.Reply]:
    async with asyncio.timeout(WAIT):
        data = await ws.recv()
    assert isinstance(data, bytes)
    return read_replies(data)


@contextlib.asynccontextmanager
async def protobuf_client(url: str, *channels: str) -> AsyncIterator[ClientConnection]:
    """A raw Protobuf client, connected and subscribed to ``channels`` (one frame each way)."""
    async with connect(url, subprotocols=[PROTOBUF], open_timeout=WAIT) as ws:
        assert ws.subprotocol == PROTOBUF
        subscribes = [pb.Command(id=i + 2, subscribe=pb.SubscribeRequest(channel=ch)) for i, ch in enumerate(channels)]
        await ws.send(frame(pb.Command(id=1, connect=pb.ConnectRequest()), *subscribes))
        got: list[pb.Reply] = []
        while len(got) < 1 + len(channels):
            got += await recv_frame(ws)
        assert [r.id for r in got] == list(range(1, 2 + len(channels)))
        assert got[0].connect.client and not any(r.HasField("error") for r in got)
        yield ws


async def closed(ws: ClientConnection) -> tuple[int, str]:
    async with asyncio.timeout(WAIT):
        _, close = await read_until_closed(ws.recv)
    return close.code, close.reason


@pytest.mark.parametrize("query", ["cf_protocol=protobuf", "format=protobuf"])
async def test_protobuf_asked_for_in_the_url(caplog: pytest.LogCaptureFixture, query: str) -> None:
    async with serving(caplog) as (hub, url), connect(f"{url}?{query}", open_timeout=WAIT) as ws:
        assert ws.subprotocol is None
        await ws.send(frame(pb.Command(id=1, connect=pb.ConnectRequest())))
        (reply,) = await recv_frame(ws)
        assert reply.id == 1 and reply.connect.client
        assert [s.codec.name for s in hub.sessions_of("")] == ["protobuf"]


async def test_queued_pushes_share_one_binary_frame(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as (hub, url), protobuf_client(url, "chat:a") as ws:
        for n in range(10):  # one round: the first goes at once, the fan-out queues the rest
            await hub.publish("chat:a", {"n": n})
        (first,) = await recv_frame(ws)
        replies = await recv_frame(ws)
        assert first.push.pub.data == b'{"n":0}'
        assert [r.push.pub.data for r in replies] == [b'{"n":%d}' % n for n in range(1, 10)]
        assert [r.push.pub.offset for r in [first, *replies]] == list(range(1, 11))
        assert {r.push.channel for r in replies} == {"chat:a"}


async def test_binary_batches_stay_under_client_max_batch_bytes(caplog: pytest.LogCaptureFixture) -> None:
    limit = 100
    async with serving(caplog, client_max_batch_bytes=limit) as (hub, url), protobuf_client(url, "chat:a") as ws:
        for n in range(10):
            await hub.publish("chat:a", {"n": n, "pad": "x" * 10})
        sizes, pubs = [], []
        while len(pubs) < 10:
            async with asyncio.timeout(WAIT):
                data = await ws.recv()
            assert isinstance(data, bytes)
            sizes.append(len(data))
            pubs += [r.push.pub.offset for r in read_replies(data)]
        assert pubs == list(range(1, 11))
        assert len(sizes) > 1 and max(sizes) < limit


BAD_FRAMES = {
    "truncated varint": b"\x80",
    "length past the end": b"\x05\x08\x01",
    "not a Command": b"\x02\xff\xff",
    "text frame": '{"id":1,"connect":{}}',
    "command without id": frame(pb.Command(presence=pb.PresenceRequest(channel="chat:a"))),
}


@pytest.mark.parametrize("bad", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_unreadable_frame_closes_that_client_with_3501_only(
    caplog: pytest.LogCaptureFixture, bad: str | bytes
) -> None:
    async with serving(caplog) as (hub, url):
        async with protobuf_client(url, "chat:a") as ws, protobuf_client(url, "chat:a") as other:
            async with asyncio.timeout(WAIT):
                json_client = await ProtocolClient.open(url, ("chat:a",), subprotocols=[Subprotocol("centrifuge-json")])
            try:
                await ws.send(bad)
                code, _ = await closed(ws)
                assert code == 3501
                await hub.publish("chat:a", {"after": True})
                assert (await recv_frame(other))[0].push.pub.data == b'{"after":true}'
                async with asyncio.timeout(WAIT):
                    assert (await json_client.message())["push"]["pub"]["data"] == {"after": True}
            finally:
                await json_client.ws.close()


async def test_binary_frame_over_client_max_frame_bytes_is_1009(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog, client_max_frame_bytes=1024) as (_, url), protobuf_client(url) as ws:
        big = pb.Command(id=2, publish=pb.PublishRequest(channel="chat:a", data=b"x" * 1024))
        await ws.send(frame(big))
        assert (await closed(ws))[0] == 1009


async def test_pings_are_empty_replies_and_a_silent_client_gets_3012(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog, ping_interval=0.2, pong_timeout=0.1) as (_, url), protobuf_client(url) as ws:
        async with asyncio.timeout(WAIT):
            assert await ws.recv() == b"\x00"
            await ws.send(b"\x00")  # the pong: an empty command
            assert await ws.recv() == b"\x00"
        assert await closed(ws) == (3012, "no pong")


async def test_fan_out_encodes_a_publication_once_per_encoding() -> None:
    async with Hub() as hub:
        transports = [FakeTransport() for _ in range(4)]
        codecs = [ProtobufCodec(), ProtobufCodec(), CentrifugeCodec(), CentrifugeCodec()]
        sessions = [hub.open_session(t, c, user="u") for t, c in zip(transports, codecs, strict=True)]
        runners = [asyncio.create_task(hub.serve(s)) for s in sessions]
        try:
            for session in sessions:
                await hub.subscribe(session, "room")
                session.finish_subscribe("room")
            await hub.publish("room", {"x": 1})
            async with asyncio.timeout(WAIT):
                for t in transports:
                    while not t.sent:
                        t.sent_event.clear()
                        await t.sent_event.wait()
            pb1, pb2, json1, json2 = (t.sent[0] for t in transports)
            assert pb1 is pb2 and json1 is json2
            assert isinstance(pb1, bytes) and read_replies(pb1)[0].push.pub.data == b'{"x":1}'
            assert isinstance(json1, str)
        finally:
            for session in sessions:
                session.close()
            await asyncio.wait_for(asyncio.gather(*runners), WAIT)
