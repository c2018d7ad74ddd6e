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

from .codes import ErrorCode
from .errors import ReplyError

RawJSON = bytes
"""A JSON document, already encoded (UTF-8, no newlines)."""


class Binary(bytes):
    """A payload that is not JSON, sent by a Protobuf client. It travels as is to Protobuf
    clients; a JSON client that would receive it is disconnected with 3506 (see
    :class:`~.codes.DisconnectCode`), as Centrifugo does."""


def to_raw(value: Any) -> RawJSON:
    """Encode ``value`` as raw JSON: the one place where payloads become JSON.

    Takes any JSON value, dataclasses (orjson encodes them natively), objects with a pydantic
    v2 style ``model_dump`` (dumped with ``mode="json"``, also when nested), and ``bytes``,
    which are taken to be JSON text already and checked. :class:`Binary` payloads are kept as
    they are. Anything else raises ``TypeError``.
    """
    if isinstance(value, Binary):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        orjson.loads(raw)  # raises orjson.JSONDecodeError (a ValueError) if it is not JSON
        return raw.replace(b"\n", b"") if b"\n" in raw else raw
    return orjson.dumps(value, default=_dump_model)


def _dump_model(value: Any) -> Any:
    """orjson's fallback: a pydantic model (duck-typed, so this layer never imports pydantic)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def validate_as(model: Any, value: Any) -> Any:
    """Validate decoded JSON ``value`` with ``model``, a pydantic v2 style model class
    (anything with ``model_validate``), and return the model instance.

    Raises :class:`ReplyError` 107 ``bad request`` whose message says what is wrong.
    """
    try:
        return model.model_validate(value)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ReplyError(ErrorCode.BAD_REQUEST, _describe(exc)) from None


def _describe(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for error in errors():
        where = ".".join(str(p) for p in error.get("loc", ())) or "data"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)


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
