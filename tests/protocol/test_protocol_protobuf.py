"""The Protobuf encoding, sans I/O: bytes in, typed commands out; typed results in, bytes out.

Frames are also cross-checked against centrifuge-python's own generated module (built from
the official client.proto), so the project's .proto cannot drift from the SDKs' wire format.
"""

from __future__ import annotations

import base64
import io
import random
import re
from pathlib import Path
from typing import Any

import centrifuge.protocol.client_pb2 as sdk_pb
import orjson
import pytest
from google.protobuf import proto
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message

from fastapi_realtime.protocol import encode
from fastapi_realtime.protocol.codecs import CentrifugeCodec, RawCodec
from fastapi_realtime.protocol.commands import (
    Command,
    PublishRequest,
    RPCRequest,
    decode_frame,
)
from fastapi_realtime.protocol.errors import Disconnect, ReplyError
from fastapi_realtime.protocol.messages import Binary, ClientInfo, Publication, from_raw, to_raw
from fastapi_realtime.protocol.proto import client_pb2 as pb
from fastapi_realtime.protocol.protobuf import PING, ProtobufCodec, payload
from fastapi_realtime.protocol.protobuf import decode_frame as decode_pb

codec = ProtobufCodec()


def delimited(*messages: Message) -> bytes:
    out = io.BytesIO()
    for msg in messages:
        proto.serialize_length_prefixed(msg, out)
    return out.getvalue()


def sdk_command(obj: dict[str, Any]) -> Message:
    """A command built with the SDK's generated classes from its JSON form (bytes fields as
    the raw bytes of ``data`` values, as centrifuge-python does)."""
    return ParseDict(obj, sdk_pb.Command())


def replies(frame: bytes) -> list[dict[str, Any]]:
    """A server frame read with the SDK's generated ``Reply``, as centrifuge-python reads it."""
    stream = io.BytesIO(frame)
    out = []
    while (msg := proto.parse_length_prefixed(sdk_pb.Reply, stream)) is not None:
        out.append(MessageToDict(msg, preserving_proto_field_name=True))
    return out


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- decoding: the same commands as JSON --------------------------------------------------

JSON_COMMANDS = [
    {"id": 1, "connect": {"token": "t", "name": "py", "version": "1", "headers": {"a": "b"}, "data": {"x": 1}}},
    {"id": 2, "connect": {"subs": {"news": {"recover": True, "epoch": "e", "offset": 7}}}},
    {"id": 3, "subscribe": {"channel": "c", "token": "t", "recover": True, "epoch": "e", "offset": 9,
                            "positioned": True, "recoverable": True, "join_leave": True, "data": [1, 2]}},
    {"id": 4, "unsubscribe": {"channel": "c"}},
    {"id": 5, "publish": {"channel": "c", "data": {"text": "hi"}}},
    {"id": 6, "presence": {"channel": "c"}},
    {"id": 7, "presence_stats": {"channel": "c"}},
    {"id": 8, "history": {"channel": "c", "limit": -1, "since": {"offset": 3, "epoch": "e"}, "reverse": True}},
    {"id": 9, "history": {"channel": "c", "limit": 2}},
    {"id": 10, "ping": {}},
    {"send": {"data": "note"}},
    {"id": 11, "rpc": {"method": "m", "data": {"a": 1}}},
    {"id": 12, "refresh": {"token": "t2"}},
    {"id": 13, "sub_refresh": {"channel": "c", "token": "t3"}},
    {"id": 14, "subscribe": {"channel": "c", "delta": "fossil", "flag": 3, "tf": {"op": "or", "nodes": [
        {"key": "a", "cmp": "eq", "val": "1"}, {"key": "b", "cmp": "in", "vals": ["x", "y"]}]}}},
    {"id": 15, "connect": {"subs": {"news": {"recover": True, "tf": {"key": "k", "cmp": "ex"}}}}},
]  # fmt: skip


def as_sdk_json(obj: Any) -> Any:
    """The JSON command with every ``data`` value replaced by its JSON bytes (base64 for
    ParseDict), as a Protobuf client sends it."""
    if isinstance(obj, dict):
        return {k: b64(orjson.dumps(v)) if k == "data" else as_sdk_json(v) for k, v in obj.items()}
    return obj


@pytest.mark.parametrize("obj", JSON_COMMANDS, ids=lambda o: next(k for k in o if k != "id"))
def test_protobuf_commands_decode_to_the_same_typed_commands_as_json(obj: dict[str, Any]) -> None:
    frame = delimited(sdk_command(as_sdk_json(obj)))
    assert decode_pb(frame) == decode_frame(orjson.dumps(obj).decode())


def test_several_commands_in_one_frame_keep_their_order() -> None:
    frame = delimited(*(sdk_command(as_sdk_json(o)) for o in JSON_COMMANDS))
    assert [c.id for c in decode_pb(frame)] == [o.get("id", 0) for o in JSON_COMMANDS]


def test_an_empty_command_is_the_pong() -> None:
    assert decode_pb(b"\x00") == [Command(id=0, method="")]
    assert decode_pb(PING) == [Command(id=0, method="")]


def test_a_command_with_an_id_and_no_known_request_gets_104() -> None:
    (cmd,) = decode_pb(delimited(pb.Command(id=5)))
    assert cmd.id == 5 and cmd.error is not None and cmd.error.code == 104


def test_non_json_bytes_are_binary_payloads() -> None:
    frame = delimited(
        pb.Command(id=1, publish=pb.PublishRequest(channel="c", data=b"\x00\xff")),
        pb.Command(id=2, publish=pb.PublishRequest(channel="c")),
        pb.Command(id=3, rpc=pb.RPCRequest(method="m", data=b"not json")),
    )
    first, empty, rpc = decode_pb(frame)
    assert first.request == PublishRequest(channel="c", data=b"\x00\xff")
    assert isinstance(first.request.data, Binary)
    assert isinstance(empty.request, PublishRequest) and isinstance(empty.request.data, Binary)
    assert rpc.request == RPCRequest(method="m", data=b"not json")
    assert from_raw(rpc.request.data) == b"not json"  # hooks get bytes
    assert payload(b'{"a": 1}') == b'{"a": 1}' and not isinstance(payload(b"[1]"), Binary)
    assert to_raw(Binary(b"\x01")) == b"\x01"


# -- decoding: bad frames are 3501, never a traceback -------------------------------------

BAD_FRAMES = {
    "empty frame": b"",
    "truncated varint": b"\x80",
    "varint over ten bytes": b"\xff" * 11 + b"\x01",
    "length past the end": b"\x05\x08\x01",
    "message that does not parse": b"\x02\xff\xff",
    "wrong wire type": b"\x02\x0d\x00",
    "string that is not UTF-8": delimited(pb.Command(id=1, presence=pb.PresenceRequest(channel="x"))).replace(
        b"x", b"\xff"
    ),
    "command id required": delimited(pb.Command(presence=pb.PresenceRequest(channel="x"))),
    "second message truncated": delimited(pb.Command(id=1, ping=pb.PingRequest())) + b"\x09\x08",
}


@pytest.mark.parametrize("frame", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
def test_malformed_frames_are_bad_request_3501(frame: bytes) -> None:
    with pytest.raises(Disconnect) as info:
        decode_pb(frame)
    assert info.value.code == 3501


def test_text_frames_are_3501_for_protobuf_clients() -> None:
    with pytest.raises(Disconnect) as info:
        decode_pb('{"id":1,"connect":{}}')
    assert info.value.code == 3501


def test_random_bytes_decode_or_give_3501() -> None:
    rng = random.Random(8)
    valid = delimited(*(sdk_command(as_sdk_json(o)) for o in JSON_COMMANDS))
    codes = []
    for _ in range(3000):
        if rng.random() < 0.5:
            frame = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        else:  # a valid frame with a few bytes flipped or cut
            buf = bytearray(valid[: rng.randrange(1, len(valid) + 1)])
            for _ in range(rng.randrange(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            frame = bytes(buf)
        try:
            commands = decode_pb(frame)
        except Disconnect as exc:
            codes.append(exc.code)
        else:
            assert commands and all(isinstance(c, Command) for c in commands)
    assert set(codes) == {3501}


# -- encoding, read back with the SDK's generated module ----------------------------------


def test_replies_and_errors_read_back_with_the_sdk_module() -> None:
    result = {
        "client": "c1",
        "version": "v",
        "ping": 25,
        "pong": True,
        "data": codec.payload(b'{"hello":1}'),
        "subs": {"news": {"recoverable": True, "epoch": "e", "offset": 3, "positioned": True}},
    }
    frame = codec.reply(1, "connect", result) + codec.error_reply(2, ReplyError(111))
    connect, error = replies(frame)
    assert connect["id"] == 1 and connect["connect"]["client"] == "c1" and connect["connect"]["pong"] is True
    assert connect["connect"]["subs"]["news"]["offset"] == "3"  # uint64 as a string in MessageToDict
    assert error == {"id": 2, "error": {"code": 111, "message": "too many requests", "temporary": True}}
    (empty,) = replies(codec.reply(3, "publish", {}))
    assert empty == {"id": 3, "publish": {}}


def test_pushes_read_back_with_the_sdk_module() -> None:
    info = ClientInfo(user="u", client="c", conn_info=b'{"n":1}')
    pub = Publication(data=b'{"x":1}', offset=4, info=info, tags={"k": "v"}, time=1700000000000)
    frame = b"".join(
        [
            codec.publication("ch", pub),
            codec.join("ch", info),
            codec.leave("ch", info),
            codec.unsubscribe("ch", 2000, "server unsubscribe"),
            codec.subscribe("ch", {"recoverable": True, "epoch": "e", "ttl": 5, "expires": True}),
            codec.message(b'"hi"'),
            PING,
        ]
    )
    got = [r.get("push", r) for r in replies(frame)]
    assert got[0]["channel"] == "ch" and got[0]["pub"]["offset"] == "4" and got[0]["pub"]["tags"] == {"k": "v"}
    assert got[0]["pub"]["info"]["user"] == "u"
    assert got[1]["join"]["info"]["client"] == "c" and got[2]["leave"]["info"]["user"] == "u"
    assert got[3]["unsubscribe"] == {"code": 2000, "reason": "server unsubscribe"}
    assert got[4]["subscribe"] == {"recoverable": True, "epoch": "e"}  # push fields only
    assert got[5]["message"]["data"] == b64(b'"hi"')
    assert got[6] == {}  # the ping: an empty reply


def test_a_publication_is_encoded_once_per_codec() -> None:
    pub = Publication(data=b'{"x":1}', offset=1)
    first = codec.publication("ch", pub)
    assert ProtobufCodec().publication("ch", pub) is first
    json_frame = CentrifugeCodec().publication("ch", pub)
    assert set(pub.encoded) == {"protobuf", encode.JSON_CODEC}
    assert CentrifugeCodec().publication("ch", pub) is json_frame


def test_binary_publications_cannot_be_sent_to_json_clients() -> None:
    pub = Publication(data=Binary(b"\x00\xff"))
    assert replies(codec.publication("ch", pub))[0]["push"]["pub"]["data"] == b64(b"\x00\xff")
    for json_codec in (CentrifugeCodec(), CentrifugeCodec(unidirectional=True)):
        with pytest.raises(Disconnect) as info:
            json_codec.publication("ch", pub)
        assert info.value.code == 3506
    empty = Publication(data=Binary(b""))
    assert orjson.loads(CentrifugeCodec().publication("ch", empty))["push"]["pub"]["data"] is None
    assert RawCodec().publication("ch", pub) == b"\x00\xff"  # the tutorial API sends it as a binary frame


def test_every_field_matches_the_official_definition() -> None:
    """Each message and field of our client.proto has the number and type of the same field in
    the SDK's module (generated from centrifugal/protocol's client.proto)."""
    official = sdk_pb.DESCRIPTOR.message_types_by_name
    for name, ours in pb.DESCRIPTOR.message_types_by_name.items():
        theirs = official[name]
        for field in ours.fields:
            if (name, field.name) in NEWER_THAN_THE_PYTHON_SDK:
                continue
            other = theirs.fields_by_name[field.name]
            assert field.number == other.number and field.type == other.type, (name, field.name)
            assert field.is_repeated == other.is_repeated, (name, field.name)
            if field.message_type is not None:
                assert field.message_type.name == other.message_type.name


NEWER_THAN_THE_PYTHON_SDK = {("SubscribeRequest", "type"): 15, ("SubRefreshRequest", "type"): 3}
"""Fields (2026) that centrifuge-python 0.7's module lacks: read so that map and shared poll
subscriptions can be refused with 108. Checked against centrifuge-js's Protobuf build."""


def test_newer_fields_match_the_js_sdks_protobuf_build() -> None:
    source = (Path(__file__).parents[1] / "js/node_modules/centrifuge/build/protobuf/index.js").read_text()
    for (message, name), number in NEWER_THAN_THE_PYTHON_SDK.items():
        encoder = source[source.index(f"{message}.encode = function") :][:6000]
        found = re.search(rf"message\.{name} != null.{{0,200}}?/\* id (\d+), wireType (\d+)", encoder, re.S)
        assert found is not None, (message, name)
        assert (int(found[1]), int(found[2])) == (number, 0)  # a varint
        field = pb.DESCRIPTOR.message_types_by_name[message].fields_by_name[name]
        assert (field.number, field.type) == (number, field.TYPE_INT32)
