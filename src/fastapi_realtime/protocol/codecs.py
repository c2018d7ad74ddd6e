"""How a session turns hub events into frames. Pure.

Two codecs:

- :class:`CentrifugeCodec` speaks the Centrifuge JSON protocol. Bidirectional (the SDKs'
  WebSocket): pushes are wrapped in ``{"push":...}``, queued messages are batched into one
  frame with ``\n``, the server pings with ``{}`` and expects ``{}`` back. Unidirectional
  (plain WebSocket clients that only listen): pushes are sent unwrapped, one per frame, and
  pings expect no answer.
- :class:`RawCodec` is for hand-written ``@app.websocket`` endpoints: a publication is sent as
  its payload alone (a JSON string payload as plain text, anything else as JSON text), one
  message per frame, and join/leave events are not sent.

Methods return ``None`` for what a codec does not send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from . import encode
from .messages import ClientInfo, Publication, RawJSON


class Codec(Protocol):
    """The frames a session sends for what the hub hands it."""

    name: str
    batching: bool
    """Several queued messages may be joined with ``\n`` into one frame."""
    ping: str | None
    """The frame a server ping is, or ``None`` when the codec has no application ping."""
    expects_pong: bool
    """The peer must answer pings (else the session closes with 3012)."""

    def publication(self, channel: str, pub: Publication) -> str | bytes: ...
    def join(self, channel: str, info: ClientInfo) -> str | None: ...
    def leave(self, channel: str, info: ClientInfo) -> str | None: ...
    def message(self, data: RawJSON) -> str | bytes: ...
    def unsubscribe(self, channel: str, code: int, reason: str) -> str | None: ...
    def subscribe(self, channel: str, result: Mapping[str, Any]) -> str | None: ...
    def disconnect(self, code: int, reason: str) -> str | None: ...


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
        frame = pub.encoded.get(self.name)
        if frame is None:
            frame = pub.encoded[self.name] = raw_text(pub.data)
        return frame

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
