"""How a session turns hub events into frames. Pure.

Three codecs:

- :class:`CentrifugeCodec` speaks the Centrifuge JSON protocol. Bidirectional (the SDKs'
  WebSocket): pushes are wrapped in ``{"push":...}``, queued messages are batched into one
  frame with ``\n``, the server pings with ``{}`` and expects ``{}`` back. Unidirectional
  (plain WebSocket clients that only listen): pushes are sent unwrapped, one per frame, and
  pings expect no answer.
- :class:`~.protobuf.ProtobufCodec` (in :mod:`.protobuf`) speaks the same protocol in its
  Protobuf encoding: varint-delimited messages in binary frames.
- :class:`RawCodec` is for hand-written ``@app.websocket`` endpoints: a publication is sent as
  its payload alone (a JSON string payload as plain text, anything else as JSON text), one
  message per frame, and join/leave events are not sent.

Methods return ``None`` for what a codec does not send. The protocol handler needs more of a
codec than a session does: :class:`ClientCodec` (decoding commands, encoding replies).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from . import encode
from .commands import Command, decode_frame
from .delta import fossil_patch, json_text
from .errors import ReplyError
from .messages import Binary, ClientInfo, Publication, RawJSON


class Codec(Protocol):
    """The frames a session sends for what the hub hands it."""

    name: str
    batching: bool
    """Several queued messages may be joined into one frame (text frames with ``\n``, binary
    frames, whose messages carry their own length, end to end)."""

    @property
    def ping(self) -> str | bytes | None:
        """The frame a server ping is, or ``None`` when the codec has no application ping."""
        ...

    expects_pong: bool
    """The peer must answer pings (else the session closes with 3012)."""

    def publication(self, channel: str, pub: Publication) -> str | bytes:
        """The frame for ``pub``, built once per publication and cached as
        ``pub.encoded[self.name]`` (the fan-out reads that cache before calling this)."""
        ...

    def delta_publication(self, channel: str, pub: Publication, use_delta: bool) -> str | bytes:
        """``pub`` for a subscription with delta compression: a delta against
        ``pub.delta_base`` when ``use_delta`` (the client holds that base) and a delta is worth
        it, else the full payload."""
        ...

    def join(self, channel: str, info: ClientInfo) -> str | bytes | None: ...
    def leave(self, channel: str, info: ClientInfo) -> str | bytes | None: ...
    def message(self, data: RawJSON) -> str | bytes: ...
    def unsubscribe(self, channel: str, code: int, reason: str) -> str | bytes | None: ...
    def subscribe(self, channel: str, result: Mapping[str, Any]) -> str | bytes | None: ...
    def disconnect(self, code: int, reason: str) -> str | bytes | None: ...


class ClientCodec(Codec, Protocol):
    """A Centrifuge-protocol encoding, as the protocol handler uses it.

    Results are built as mappings named after the protocol's fields; payload leaves come from
    :meth:`payload`, :meth:`publication_dict` and :meth:`client_info_dict` so that each
    encoding gets the values it embeds.
    """

    unidirectional: bool

    def decode(self, frame: str | bytes) -> list[Command]:
        """The commands in a client frame; raises :class:`~.errors.Disconnect` (3501) when
        the frame cannot be read."""
        ...

    def reply(self, cmd_id: int, method: str, result: Mapping[str, Any]) -> str | bytes: ...
    def error_reply(self, cmd_id: int, error: ReplyError) -> str | bytes: ...
    def payload(self, data: RawJSON) -> Any: ...
    def publication_dict(self, pub: Publication, *, delta: bool = False) -> dict[str, Any]: ...
    def client_info_dict(self, info: ClientInfo) -> dict[str, Any]: ...
    def subscribe(self, channel: str, result: Mapping[str, Any]) -> str | bytes: ...
    def connect(self, result: Mapping[str, Any]) -> str | bytes: ...
    def refresh(self, ttl: int) -> str | bytes | None: ...


class CentrifugeCodec:
    """Centrifuge client protocol v2, JSON encoding; bidirectional unless told otherwise."""

    ping: str | None = encode.PING

    def __init__(self, *, unidirectional: bool = False) -> None:
        self.unidirectional = unidirectional
        self.name = encode.UNI_JSON_CODEC if unidirectional else encode.JSON_CODEC
        self.batching = not unidirectional
        self.expects_pong = not unidirectional

    def _push(self, channel: str, kind: str, body: Mapping[str, Any]) -> str:
        return encode.push(channel, kind, body, wrapped=not self.unidirectional)

    def publication(self, channel: str, pub: Publication) -> str:
        return encode.pub_push_frame(channel, pub, wrapped=not self.unidirectional)

    def delta_publication(self, channel: str, pub: Publication, use_delta: bool) -> str:
        patch = fossil_patch(pub) if use_delta else None
        return encode.delta_pub_push_frame(channel, pub, json_text(patch) if patch is not None else None)

    def join(self, channel: str, info: ClientInfo) -> str:
        return self._push(channel, "join", {"info": encode.client_info_dict(info)})

    def leave(self, channel: str, info: ClientInfo) -> str:
        return self._push(channel, "leave", {"info": encode.client_info_dict(info)})

    def message(self, data: RawJSON) -> str:
        return self._push("", "message", {"data": orjson.Fragment(data)})

    def unsubscribe(self, channel: str, code: int, reason: str) -> str:
        return self._push(channel, "unsubscribe", {"code": code, "reason": reason})

    def subscribe(self, channel: str, result: Mapping[str, Any]) -> str:
        return self._push(channel, "subscribe", result)

    def connect(self, result: Mapping[str, Any]) -> str:
        """The ``connect`` push that opens a unidirectional connection."""
        return self._push("", "connect", result)

    def refresh(self, ttl: int) -> str | None:
        """Tell a unidirectional client that the server extended its connection."""
        return self._push("", "refresh", {"expires": True, "ttl": ttl}) if self.unidirectional else None

    def disconnect(self, code: int, reason: str) -> str | None:
        """Unidirectional clients get the close code and reason as a push before the close frame."""
        return self._push("", "disconnect", {"code": code, "reason": reason}) if self.unidirectional else None

    def decode(self, frame: str | bytes) -> list[Command]:
        return decode_frame(frame)

    def reply(self, cmd_id: int, method: str, result: Mapping[str, Any]) -> str:
        return encode.reply(cmd_id, method, result)

    def error_reply(self, cmd_id: int, error: ReplyError) -> str:
        return encode.error_reply(cmd_id, error)

    def payload(self, data: RawJSON) -> orjson.Fragment:
        return encode.json_data(data)

    def publication_dict(self, pub: Publication, *, delta: bool = False) -> dict[str, Any]:
        return encode.publication_dict(pub, delta=delta)

    def client_info_dict(self, info: ClientInfo) -> dict[str, Any]:
        return encode.client_info_dict(info)


def raw_text(data: RawJSON) -> str:
    """A payload as plain text: a JSON string is unwrapped, anything else stays JSON."""
    if data[:1] == b'"':
        value = orjson.loads(data)
        assert isinstance(value, str)
        return value
    return data.decode()


class RawCodec:
    """Plain payloads, one per frame, for the tutorial-style API."""

    name = "raw"
    batching = False

    def __init__(self, ping: str | None = None) -> None:
        self.ping = ping
        self.expects_pong = ping is not None

    def publication(self, channel: str, pub: Publication) -> str | bytes:
        """The payload as text, or as a binary frame for a :class:`Binary` payload."""
        frame = pub.encoded.get(self.name)
        if frame is None:
            data = pub.data
            frame = pub.encoded[self.name] = bytes(data) if isinstance(data, Binary) else raw_text(data)
        return frame

    def delta_publication(self, channel: str, pub: Publication, use_delta: bool) -> str | bytes:
        return self.publication(channel, pub)  # raw clients never negotiate delta compression

    def join(self, channel: str, info: ClientInfo) -> None:
        return None

    def leave(self, channel: str, info: ClientInfo) -> None:
        return None

    def message(self, data: RawJSON) -> str:
        return raw_text(data)

    def unsubscribe(self, channel: str, code: int, reason: str) -> None:
        return None

    def subscribe(self, channel: str, result: Mapping[str, Any]) -> None:
        return None

    def disconnect(self, code: int, reason: str) -> None:
        return None
