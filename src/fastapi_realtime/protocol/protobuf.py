"""The Centrifuge client protocol v2 in its Protobuf encoding. Pure: no I/O.

Clients that offer the ``centrifuge-protobuf`` WebSocket subprotocol send and receive binary
frames holding one or more messages, each prefixed with its length as a varint. The messages
are those of ``proto/client.proto``, compiled with protoc (``make proto``) into
``proto/client_pb2.py``; nothing here encodes a field by hand.

Decoding yields the same :class:`~.commands.Command` and request types as the JSON encoding,
so the protocol handler does not care which encoding a client speaks. Bad input:

- a frame that cannot be read (a text frame, a truncated or malformed varint, a message
  shorter than its length prefix, a message that does not parse, a string that is not UTF-8,
  a command without an id other than ``send``) raises :class:`~.errors.Disconnect` with
  ``3501 bad request``;
- a command with an id and no request this server knows gets a 104 ``method not found``
  error reply, as in JSON.

Payloads (``data`` fields) are bytes. Bytes that are a JSON document are kept as raw JSON
and reach JSON clients unchanged; other bytes become :class:`~.messages.Binary`, which JSON
clients cannot receive (they are disconnected with 3506, as Centrifugo does).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from google.protobuf import json_format, proto
from google.protobuf.message import DecodeError, Message

from .codes import DisconnectCode, ErrorCode
from .commands import (
    PARSERS,
    ChannelRequest,
    Command,
    ConnectRequest,
    HistoryRequest,
    PingRequest,
    PublishRequest,
    RefreshRequest,
    Request,
    RPCRequest,
    SendRequest,
    SubRefreshRequest,
    SubscribeRequest,
)
from .delta import fossil_patch
from .errors import Disconnect, ReplyError
from .messages import Binary, ClientInfo, Publication, RawJSON, StreamPosition, to_raw
from .proto import client_pb2 as pb

PROTOBUF_CODEC = "protobuf"

PING = b"\x00"
"""The server ping: an empty ``Reply`` (length 0). The client answers with an empty ``Command``."""

_SUBSCRIBE_PUSH_FIELDS = frozenset(pb.Subscribe.DESCRIPTOR.fields_by_name)


def _bad_frame(reason: str) -> Disconnect:
    return Disconnect(DisconnectCode.BAD_REQUEST, reason)


# -- decoding ---------------------------------------------------------------------------


def payload(data: bytes) -> RawJSON:
    """A payload from a Protobuf client: raw JSON when the bytes are JSON, else :class:`Binary`."""
    try:
        return to_raw(data)
    except orjson.JSONDecodeError:
        return Binary(data)


def _optional_payload(data: bytes) -> RawJSON | None:
    return payload(data) if data else None


def _request(cls: Callable[..., Request], msg: Message, **given: Any) -> Request:
    """Build ``cls`` from the fields of ``msg`` that share its field names (``given`` wins).

    ``bytes`` fields are optional payloads: empty means absent.
    """
    names = msg.DESCRIPTOR.fields_by_name
    values = dict(given)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in values and f.name in names:
            value = getattr(msg, f.name)
            values[f.name] = _optional_payload(value) if isinstance(value, bytes) else value
    return cls(**values)


def _subscribe(msg: pb.SubscribeRequest, **given: Any) -> Request:
    """A subscribe request; its tags filter becomes the mapping the JSON encoding gives."""
    tf = json_format.MessageToDict(msg.tf, preserving_proto_field_name=True) if msg.HasField("tf") else None
    return _request(SubscribeRequest, msg, tf=tf, **given)


def _connect(msg: pb.ConnectRequest) -> Request:
    subs = {channel: _subscribe(sub, channel=channel) for channel, sub in msg.subs.items()}
    return _request(ConnectRequest, msg, subs=subs, headers=dict(msg.headers))


def _history(msg: pb.HistoryRequest) -> Request:
    since = StreamPosition(offset=msg.since.offset, epoch=msg.since.epoch) if msg.HasField("since") else None
    return _request(HistoryRequest, msg, since=since)


def _publish(msg: pb.PublishRequest) -> Request:
    return PublishRequest(channel=msg.channel, data=payload(msg.data))


REQUESTS: dict[str, Callable[[Any], Request]] = {
    "connect": _connect,
    "subscribe": _subscribe,
    "unsubscribe": lambda m: ChannelRequest(channel=m.channel),
    "publish": _publish,
    "presence": lambda m: ChannelRequest(channel=m.channel),
    "presence_stats": lambda m: ChannelRequest(channel=m.channel),
    "history": _history,
    "ping": lambda m: PingRequest(),
    "send": lambda m: _request(SendRequest, m),
    "rpc": lambda m: _request(RPCRequest, m),
    "refresh": lambda m: _request(RefreshRequest, m),
    "sub_refresh": lambda m: _request(SubRefreshRequest, m),
}
assert list(REQUESTS) == list(PARSERS)


def decode_command(msg: pb.Command) -> Command:
    """One parsed ``Command`` message as a :class:`Command` (see the module docstring)."""
    # "The server will only take the first non-null request" (client.proto).
    method = next((name for name in REQUESTS if msg.HasField(name)), None)
    if method is None:
        if msg.id:
            return Command(id=msg.id, method="", error=ReplyError(ErrorCode.METHOD_NOT_FOUND))
        return Command(id=0, method="")  # the pong: an empty command
    if msg.id == 0 and method != "send":
        raise _bad_frame("command id required")
    return Command(id=msg.id, method=method, request=REQUESTS[method](getattr(msg, method)))


def decode_frame(frame: str | bytes) -> list[Command]:
    """The varint-delimited commands of a binary frame, in order.

    Raises :class:`~.errors.Disconnect` (3501) if the frame cannot be read.
    """
    if isinstance(frame, str):
        raise _bad_frame("expected binary frames")
    stream = io.BytesIO(frame)
    messages = []
    try:
        while (msg := proto.parse_length_prefixed(pb.Command, stream)) is not None:
            messages.append(msg)
    except (DecodeError, ValueError, IndexError, OverflowError):
        raise _bad_frame("malformed Protobuf frame") from None
    if not messages:
        raise _bad_frame("empty frame")
    return [decode_command(msg) for msg in messages]


# -- encoding ---------------------------------------------------------------------------


def _frame(reply: pb.Reply) -> bytes:
    out = io.BytesIO()
    proto.serialize_length_prefixed(reply, out)
    return out.getvalue()


def _push(channel: str, **body: Any) -> bytes:
    return _frame(pb.Reply(push=pb.Push(channel=channel, **body)))


class ProtobufCodec:
    """Centrifuge client protocol v2, Protobuf encoding, bidirectional (WebSocket).

    Queued messages are batched into one binary frame; a publication's push is encoded once
    per channel and cached on the publication under :data:`PROTOBUF_CODEC`.
    """

    name = PROTOBUF_CODEC
    batching = True
    ping: bytes = PING
    expects_pong = True
    unidirectional = False

    def publication(self, channel: str, pub: Publication) -> bytes:
        frame = pub.encoded.get(self.name)
        if frame is None:
            frame = pub.encoded[self.name] = _push(channel, pub=self.publication_dict(pub))
        assert isinstance(frame, bytes)
        return frame

    def delta_publication(self, channel: str, pub: Publication, use_delta: bool) -> bytes:
        patch = fossil_patch(pub) if use_delta else None
        if patch is None:
            return self.publication(channel, pub)  # Protobuf payloads are bytes either way
        key = f"{self.name}:delta"
        frame = pub.encoded.get(key)
        if frame is None:
            body = self.publication_dict(pub)
            body["data"], body["delta"] = patch, True
            frame = pub.encoded[key] = _push(channel, pub=body)
        assert isinstance(frame, bytes)
        return frame

    def join(self, channel: str, info: ClientInfo) -> bytes:
        return _push(channel, join={"info": self.client_info_dict(info)})

    def leave(self, channel: str, info: ClientInfo) -> bytes:
        return _push(channel, leave={"info": self.client_info_dict(info)})

    def message(self, data: RawJSON) -> bytes:
        return _push("", message={"data": data})

    def unsubscribe(self, channel: str, code: int, reason: str) -> bytes:
        return _push(channel, unsubscribe={"code": code, "reason": reason})

    def subscribe(self, channel: str, result: Mapping[str, Any]) -> bytes:
        """The push for a server-side subscription added after connect (a subset of the
        subscribe result's fields)."""
        return _push(channel, subscribe={k: v for k, v in result.items() if k in _SUBSCRIBE_PUSH_FIELDS})

    def connect(self, result: Mapping[str, Any]) -> bytes:
        return _push("", connect=result)

    def refresh(self, ttl: int) -> None:
        return None

    def disconnect(self, code: int, reason: str) -> None:
        return None  # the WebSocket close frame carries code and reason

    def decode(self, frame: str | bytes) -> list[Command]:
        return decode_frame(frame)

    def reply(self, cmd_id: int, method: str, result: Mapping[str, Any]) -> bytes:
        return _frame(pb.Reply(id=cmd_id, **{method: result}))

    def error_reply(self, cmd_id: int, error: ReplyError) -> bytes:
        body = {"code": error.code, "message": error.message, "temporary": error.temporary}
        return _frame(pb.Reply(id=cmd_id, error=body))

    def payload(self, data: RawJSON) -> bytes:
        return bytes(data)

    def publication_dict(self, pub: Publication, *, delta: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"data": bytes(pub.data), "offset": pub.offset, "time": pub.time}
        if pub.info is not None:
            out["info"] = self.client_info_dict(pub.info)
        if pub.tags:
            out["tags"] = dict(pub.tags)
        return out

    def client_info_dict(self, info: ClientInfo) -> dict[str, Any]:
        return {
            "user": info.user,
            "client": info.client,
            "conn_info": info.conn_info or b"",
            "chan_info": info.chan_info or b"",
        }
