"""Decoding client frames into typed commands (JSON encoding, protocol v2). Pure: no I/O.

A frame holds one or more commands separated by ``\\n``. :func:`decode_frame` turns it into a
list of :class:`Command` in the order the client sent them. Two kinds of bad input:

- a frame that cannot be read as commands at all (invalid JSON, a line that is not an object,
  an invalid ``id``, a missing ``id`` on anything but ``send``, an ``id`` with no method)
  raises :class:`~.errors.Disconnect` with ``3501 bad request``: the SDKs never send such
  frames, so the peer is broken or hostile;
- a command whose method is unknown or whose fields have the wrong type is returned with
  ``error`` set, so the caller answers it with an error reply and goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .codes import DisconnectCode, ErrorCode
from .errors import Disconnect, ReplyError
from .messages import RawJSON, StreamPosition

MAX_UINT32 = 2**32 - 1


class _FieldError(Exception):
    """A request field has the wrong type; becomes a 107 bad request reply."""


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise _FieldError(f"{key} must be a string")
    return value


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise _FieldError(f"{key} must be a boolean")
    return value


def _uint(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _FieldError(f"{key} must be a non-negative integer")
    return value


def _int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _FieldError(f"{key} must be an integer")
    return value


def _raw(body: Mapping[str, Any], key: str) -> RawJSON | None:
    return orjson.dumps(body[key]) if key in body else None


def _obj(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _FieldError(f"{key} must be an object")
    return value


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    channel: str
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: int = 0
    data: RawJSON | None = None
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    delta: str = ""
    """The delta type asked for (``"fossil"``), or ``""``."""
    tf: Mapping[str, Any] | None = None
    """The tags filter as sent, checked at subscribe (see :mod:`.tags_filter`)."""
    flag: int = 0
    """Bits: 1 channel compaction (not served), 2 reject an unrecoverable position with 112."""
    type: int = 0
    """Non-zero for map and shared poll subscriptions (not served: 108)."""

    @classmethod
    def parse(cls, body: Mapping[str, Any], channel: str | None = None) -> SubscribeRequest:
        return cls(
            channel=channel if channel is not None else _str(body, "channel"),
            token=_str(body, "token"),
            recover=_bool(body, "recover"),
            epoch=_str(body, "epoch"),
            offset=_uint(body, "offset"),
            data=_raw(body, "data"),
            positioned=_bool(body, "positioned"),
            recoverable=_bool(body, "recoverable"),
            join_leave=_bool(body, "join_leave"),
            delta=_str(body, "delta"),
            tf=_obj(body, "tf") or None,
            flag=_uint(body, "flag"),
            type=_int(body, "type"),
        )


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    token: str = ""
    data: RawJSON | None = None
    subs: Mapping[str, SubscribeRequest] = field(default_factory=dict)
    name: str = ""
    version: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ConnectRequest:
        subs = {ch: SubscribeRequest.parse(_obj({"s": sub}, "s"), ch) for ch, sub in _obj(body, "subs").items()}
        headers = _obj(body, "headers")
        if not all(isinstance(v, str) for v in headers.values()):
            raise _FieldError("headers must map strings to strings")
        return cls(
            token=_str(body, "token"),
            data=_raw(body, "data"),
            subs=subs,
            name=_str(body, "name"),
            version=_str(body, "version"),
            headers=dict(headers),
        )


@dataclass(frozen=True, slots=True)
class ChannelRequest:
    """unsubscribe, presence and presence_stats: a channel and nothing else."""

    channel: str

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ChannelRequest:
        return cls(channel=_str(body, "channel"))


@dataclass(frozen=True, slots=True)
class PublishRequest:
    channel: str
    data: RawJSON

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> PublishRequest:
        return cls(channel=_str(body, "channel"), data=_raw(body, "data") or b"null")


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    channel: str
    limit: int = 0
    """0: no publications, only the position; negative: all that is kept."""
    since: StreamPosition | None = None
    reverse: bool = False

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> HistoryRequest:
        since = None
        if "since" in body and body["since"] is not None:
            pos = _obj(body, "since")
            since = StreamPosition(offset=_uint(pos, "offset"), epoch=_str(pos, "epoch"))
        return cls(
            channel=_str(body, "channel"), limit=_int(body, "limit"), since=since, reverse=_bool(body, "reverse")
        )


@dataclass(frozen=True, slots=True)
class RPCRequest:
    method: str
    data: RawJSON | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> RPCRequest:
        return cls(method=_str(body, "method"), data=_raw(body, "data"))


@dataclass(frozen=True, slots=True)
class SendRequest:
    data: RawJSON | None = None

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> SendRequest:
        return cls(data=_raw(body, "data"))


@dataclass(frozen=True, slots=True)
class RefreshRequest:
    token: str

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> RefreshRequest:
        return cls(token=_str(body, "token"))


@dataclass(frozen=True, slots=True)
class SubRefreshRequest:
    channel: str
    token: str
    type: int = 0
    """Non-zero for shared poll subscriptions (not served: 108)."""

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> SubRefreshRequest:
        return cls(channel=_str(body, "channel"), token=_str(body, "token"), type=_int(body, "type"))


@dataclass(frozen=True, slots=True)
class PingRequest:
    """The legacy ``ping`` command; answered with an empty result."""

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> PingRequest:
        return cls()


Request = (
    ConnectRequest
    | SubscribeRequest
    | ChannelRequest
    | PublishRequest
    | HistoryRequest
    | RPCRequest
    | SendRequest
    | RefreshRequest
    | SubRefreshRequest
    | PingRequest
)

PARSERS: dict[str, Callable[[Mapping[str, Any]], Request]] = {
    "connect": ConnectRequest.parse,
    "subscribe": SubscribeRequest.parse,
    "unsubscribe": ChannelRequest.parse,
    "publish": PublishRequest.parse,
    "presence": ChannelRequest.parse,
    "presence_stats": ChannelRequest.parse,
    "history": HistoryRequest.parse,
    "ping": PingRequest.parse,
    "send": SendRequest.parse,
    "rpc": RPCRequest.parse,
    "refresh": RefreshRequest.parse,
    "sub_refresh": SubRefreshRequest.parse,
}
"""Method name -> parser, in the order of ``Command`` fields in client.proto."""


@dataclass(frozen=True, slots=True)
class Command:
    """One decoded command.

    ``method`` is ``""`` for the pong (the empty command ``{}``). When ``error`` is set the
    command could not be understood and must be answered with that error; ``request`` is
    then ``None``.
    """

    id: int
    method: str
    request: Request | None = None
    error: ReplyError | None = None

    @property
    def is_pong(self) -> bool:
        return self.method == "" and self.error is None


def _bad_frame(reason: str) -> Disconnect:
    return Disconnect(DisconnectCode.BAD_REQUEST, reason)


def decode_command(obj: Any) -> Command:
    """Decode one parsed JSON value into a :class:`Command` (see the module docstring)."""
    if not isinstance(obj, dict):
        raise _bad_frame("command is not an object")
    cmd_id = obj.get("id", 0)
    if not isinstance(cmd_id, int) or isinstance(cmd_id, bool) or not 0 <= cmd_id <= MAX_UINT32:
        raise _bad_frame("invalid command id")
    # "The server will only take the first non-null request" (client.proto).
    method = next((name for name in PARSERS if obj.get(name) is not None), None)
    if method is None:
        unknown = [k for k in obj if k != "id"]
        if not unknown:
            if cmd_id:
                raise _bad_frame("empty command")
            return Command(id=0, method="")
        if not cmd_id:
            raise _bad_frame("unknown method without id")
        return Command(id=cmd_id, method=unknown[0], error=ReplyError(ErrorCode.METHOD_NOT_FOUND))
    if cmd_id == 0 and method != "send":
        raise _bad_frame("command id required")
    body = obj[method]
    if not isinstance(body, dict):
        return Command(id=cmd_id, method=method, error=ReplyError(ErrorCode.BAD_REQUEST, f"{method} must be an object"))
    try:
        request = PARSERS[method](body)
    except (_FieldError, orjson.JSONEncodeError) as exc:  # data nested past orjson.dumps' 254 levels
        return Command(id=cmd_id, method=method, error=ReplyError(ErrorCode.BAD_REQUEST, str(exc)))
    return Command(id=cmd_id, method=method, request=request)


def decode_frame(frame: str | bytes) -> list[Command]:
    """Split a frame on newlines and decode each command, in order.

    Raises :class:`~.errors.Disconnect` (3501) if any line is not a JSON command object.
    """
    commands = []
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    for line in text.strip().split("\n"):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise _bad_frame("invalid JSON") from None
        commands.append(decode_command(obj))
    if not commands:
        raise _bad_frame("empty frame")
    return commands
