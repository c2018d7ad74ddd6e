"""How a session turns hub events into frames. Pure.

Two codecs:

- :class:`CentrifugeCodec` speaks the Centrifuge JSON protocol: publications become ``pub``
  pushes, messages are batched into one frame with ``\\n``, the server pings with ``{}``.
- :class:`RawCodec` is for hand-written ``@app.websocket`` endpoints: a publication is sent as
  its payload alone (a JSON string payload as plain text, anything else as JSON text), one
  message per frame, and join/leave events are not sent.
"""

from __future__ import annotations

from typing import Protocol

import orjson

from . import encode
from .messages import ClientInfo, Publication, RawJSON


class Codec(Protocol):
    """The frames a session sends for what the hub hands it."""

    name: str
    batching: bool
    """Several queued messages may be joined with ``\\n`` into one frame."""
    ping: str | None
    """The frame a server ping is, or ``None`` when the codec has no application ping."""

    def publication(self, channel: str, pub: Publication) -> str | bytes: ...
    def join(self, channel: str, info: ClientInfo) -> str | None: ...
    def leave(self, channel: str, info: ClientInfo) -> str | None: ...
    def message(self, data: RawJSON) -> str | bytes: ...
    def unsubscribe(self, channel: str, code: int, reason: str) -> str | None: ...


class CentrifugeCodec:
    """Centrifuge client protocol v2, JSON encoding."""

    name = encode.JSON_CODEC
    batching = True
    ping: str | None = encode.PING

    def publication(self, channel: str, pub: Publication) -> str:
        return encode.pub_push_frame(channel, pub)

    def join(self, channel: str, info: ClientInfo) -> str:
        return encode.push(channel, "join", {"info": encode.client_info_dict(info)})

    def leave(self, channel: str, info: ClientInfo) -> str:
        return encode.push(channel, "leave", {"info": encode.client_info_dict(info)})

    def message(self, data: RawJSON) -> str:
        return encode.push("", "message", {"data": orjson.Fragment(data)})

    def unsubscribe(self, channel: str, code: int, reason: str) -> str:
        return encode.push(channel, "unsubscribe", {"code": code, "reason": reason})


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

    def publication(self, channel: str, pub: Publication) -> str | bytes:
        key = (self.name, "")
        frame = pub.encoded.get(key)
        if frame is None:
            frame = pub.encoded[key] = raw_text(pub.data)
        return frame

    def join(self, channel: str, info: ClientInfo) -> None:
        return None

    def leave(self, channel: str, info: ClientInfo) -> None:
        return None

    def message(self, data: RawJSON) -> str:
        return raw_text(data)

    def unsubscribe(self, channel: str, code: int, reason: str) -> None:
        return None
