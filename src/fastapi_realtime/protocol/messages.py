"""Wire types shared by every layer: stream positions, client info, publications.

Payloads (``data``, ``conn_info``, ``chan_info``) are kept as *raw JSON bytes*: the JSON
encoding of the protocol embeds them verbatim, so a payload is serialised once, when it is
published, and never parsed again on its way to subscribers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

RawJSON = bytes
"""A JSON document, already encoded (UTF-8, no newlines)."""


class Binary(bytes):
    """A payload that is not JSON, sent by a Protobuf client. It travels as is to Protobuf
    clients; a JSON client that would receive it is disconnected with 3506 (see
    :class:`~.codes.DisconnectCode`), as Centrifugo does."""


def to_raw(value: Any) -> RawJSON:
    """Encode ``value`` as raw JSON. ``bytes`` are taken to be JSON already and checked;
    :class:`Binary` payloads are kept as they are."""
    if isinstance(value, Binary):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        orjson.loads(raw)  # raises orjson.JSONDecodeError (a ValueError) if it is not JSON
        return raw.replace(b"\n", b"") if b"\n" in raw else raw
    return orjson.dumps(value)


def from_raw(raw: RawJSON | None) -> Any:
    """Decode raw JSON back into Python values (``None`` stays ``None``, a :class:`Binary`
    payload becomes plain ``bytes``)."""
    if isinstance(raw, Binary):
        return bytes(raw)
    return None if raw is None else orjson.loads(raw)


@dataclass(frozen=True, slots=True)
class StreamPosition:
    """Where a channel's stream stands: the ``offset`` of its newest publication and its ``epoch``.

    Why both: offsets alone cannot tell "I missed nothing" from "the history was lost and
    counting restarted". Each time a stream is created anew (a broker restart, a Redis flush,
    its metadata expiring) it gets a new epoch, so a client holding ``(offset=14, epoch="x7")``
    can be told exactly what it missed while the epoch is still ``"x7"``, and told that it
    cannot recover once the epoch differs.
    """

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Who a connection is: user id, client (connection) id and the app's raw JSON info."""

    user: str
    client: str
    conn_info: RawJSON | None = None
    chan_info: RawJSON | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """One message published into a channel.

    ``offset`` is 0 for channels without history. ``encoded`` caches the frames built from
    this publication, one per codec name (a publication belongs to one channel), so that
    fan-out encodes it once
    (see :func:`fastapi_realtime.protocol.encode.pub_push_frame`).
    """

    data: RawJSON
    offset: int = 0
    info: ClientInfo | None = None
    tags: Mapping[str, str] | None = None
    time: int = 0
    delta_base: RawJSON | None = field(default=None, compare=False, repr=False)
    """The payload of the channel's previous publication, set by the hub when the channel has
    subscribers with delta compression: deltas are made against it."""
    encoded: dict[str, str | bytes] = field(default_factory=dict, init=False, compare=False, repr=False)
