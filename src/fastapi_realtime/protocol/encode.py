"""Encoding replies and pushes as JSON frames (protocol v2). Pure: no I/O.

Raw payloads are embedded with :class:`orjson.Fragment`, never parsed. Zero-valued fields
are left out, as the reference server does. Every function returns one message as ``str``;
the session joins queued messages with ``\\n`` into one frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .codes import DisconnectCode
from .errors import Disconnect, ReplyError
from .messages import Binary, ClientInfo, Publication, RawJSON, StreamPosition

PING = "{}"
"""The server ping: an empty reply. The client answers with the empty command ``{}``."""

BINARY_TO_JSON = "inappropriate protocol: binary data for a JSON client"

JSON_CODEC = "json"
UNI_JSON_CODEC = "json-uni"


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def client_info_dict(info: ClientInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"user": info.user, "client": info.client}
    if info.conn_info is not None:
        out["conn_info"] = orjson.Fragment(info.conn_info)
    if info.chan_info is not None:
        out["chan_info"] = orjson.Fragment(info.chan_info)
    return out


def json_data(data: RawJSON) -> orjson.Fragment:
    """A payload to embed in a JSON frame. A :class:`Binary` payload cannot be: it raises
    :class:`Disconnect` 3506 for that client (an empty one is sent as ``null``)."""
    if isinstance(data, Binary):
        if data:
            raise Disconnect(DisconnectCode.INAPPROPRIATE_PROTOCOL, BINARY_TO_JSON)
        return orjson.Fragment(b"null")
    return orjson.Fragment(data)


def publication_dict(pub: Publication, *, delta: bool = False) -> dict[str, Any]:
    """``pub`` for a JSON frame. ``delta``: for a subscription with delta compression, whose
    payloads travel as JSON strings (here the full payload's text)."""
    out: dict[str, Any] = {"data": _text_data(pub) if delta else json_data(pub.data)}
    if pub.info is not None:
        out["info"] = client_info_dict(pub.info)
    if pub.offset:
        out["offset"] = pub.offset
    if pub.tags:
        out["tags"] = dict(pub.tags)
    if pub.time:
        out["time"] = pub.time
    return out


def _text_data(pub: Publication) -> str:
    json_data(pub.data)  # a binary payload cannot go to a JSON client: 3506
    return bytes(pub.data).decode()


def position_dict(pos: StreamPosition) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if pos.offset:
        out["offset"] = pos.offset
    if pos.epoch:
        out["epoch"] = pos.epoch
    return out


def reply(cmd_id: int, method: str, result: Mapping[str, Any]) -> str:
    """A successful reply: ``{"id":N,"<method>":{...}}``."""
    return _dumps({"id": cmd_id, method: result})


def error_reply(cmd_id: int, error: ReplyError) -> str:
    """An error reply: ``{"id":N,"error":{"code":...,"message":...}}``."""
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.temporary:
        body["temporary"] = True
    return _dumps({"id": cmd_id, "error": body})


def push(channel: str, kind: str, body: Mapping[str, Any], *, wrapped: bool = True) -> str:
    """A push: ``{"push":{"channel":...,"<kind>":{...}}}`` (channel left out when empty).

    Unidirectional transports send pushes unwrapped: ``{"channel":...,"<kind>":{...}}``.
    """
    inner: dict[str, Any] = {"channel": channel} if channel else {}
    inner[kind] = body
    return _dumps({"push": inner} if wrapped else inner)


def pub_push_frame(channel: str, pub: Publication, *, wrapped: bool = True) -> str:
    """The ``pub`` push for ``pub`` in ``channel``, built once and cached on the publication."""
    key = JSON_CODEC if wrapped else UNI_JSON_CODEC
    frame = pub.encoded.get(key)
    if frame is None:
        frame = pub.encoded[key] = push(channel, "pub", publication_dict(pub), wrapped=wrapped)
    assert isinstance(frame, str)
    return frame


def delta_pub_push_frame(channel: str, pub: Publication, patch: str | None) -> str:
    """The ``pub`` push for a subscription with delta compression: the fossil delta ``patch``
    (with ``"delta": true``), or the full payload when ``patch`` is ``None``; either as a JSON
    string. Each is built once per publication and cached on it."""
    key = f"{JSON_CODEC}:delta" if patch is not None else f"{JSON_CODEC}:full"
    frame = pub.encoded.get(key)
    if frame is None:
        body = publication_dict(pub, delta=True)
        if patch is not None:
            body["data"], body["delta"] = patch, True
        frame = pub.encoded[key] = push(channel, "pub", body)
    assert isinstance(frame, str)
    return frame
