"""How the Redis broker lays out its keys and encodes what it stores and fans out. Pure.

Keys of one channel share a Redis Cluster hash tag, so a channel's stream, metadata, presence
and Pub/Sub channel sit in one slot and one Lua script can touch them all::

    {prefix}:m:{<channel>}    HASH   stream metadata: e (epoch), s (top offset),
                                     x (metadata expiry, ms), hx (history expiry, ms)
    {prefix}:h:{<channel>}    STREAM publications, entry id "<offset>-0", field d
    {prefix}:p:{<channel>}    ZSET   presence: client id scored by its expiry time (ms)
    {prefix}:i:{<channel>}    HASH   presence: client id -> encoded ClientInfo
    {prefix}:c:{<channel>}    the Pub/Sub channel (SUBSCRIBE, or SSUBSCRIBE on a cluster)

Payloads are raw JSON without newlines (see :data:`~..protocol.messages.RawJSON`), so a stored
publication is one JSON header line, a newline and the payload bytes untouched: the payload is
never parsed or re-encoded on its way through Redis. A Pub/Sub message starts with a kind byte:
``p<offset>:<publication>``, ``j<info>`` (join), ``l<info>`` (leave).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from ..protocol.messages import ClientInfo, Publication

PUBLICATION = ord("p")
JOIN = ord("j")
LEAVE = ord("l")


def hash_tag(channel: str) -> str:
    """``{channel}``: the part Redis Cluster hashes. A name holding braces would break the tag
    rule, so such a name is tagged by a digest instead (the key still names the channel)."""
    if "{" in channel or "}" in channel:
        return "{" + hashlib.blake2b(channel.encode(), digest_size=8).hexdigest() + "}" + channel
    return "{" + channel + "}"


@dataclass(frozen=True, slots=True)
class ChannelKeys:
    """The Redis names of one channel."""

    meta: str
    stream: str
    presence: str
    presence_info: str
    pubsub: str

    @classmethod
    def of(cls, prefix: str, channel: str) -> ChannelKeys:
        tag = hash_tag(channel)
        return cls(
            f"{prefix}:m:{tag}", f"{prefix}:h:{tag}", f"{prefix}:p:{tag}", f"{prefix}:i:{tag}", f"{prefix}:c:{tag}"
        )


def _info_dict(info: ClientInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"u": info.user, "c": info.client}
    if info.conn_info is not None:
        d["ci"] = info.conn_info.decode()
    if info.chan_info is not None:
        d["hi"] = info.chan_info.decode()
    return d


def _info_from(d: dict[str, Any]) -> ClientInfo:
    ci, hi = d.get("ci"), d.get("hi")
    return ClientInfo(
        user=d["u"],
        client=d["c"],
        conn_info=None if ci is None else ci.encode(),
        chan_info=None if hi is None else hi.encode(),
    )


def encode_info(info: ClientInfo) -> bytes:
    return orjson.dumps(_info_dict(info))


def decode_info(raw: bytes) -> ClientInfo:
    return _info_from(orjson.loads(raw))


def encode_publication(pub: Publication) -> bytes:
    """Header line (info, tags, time) + newline + the raw payload."""
    header: dict[str, Any] = {}
    if pub.info is not None:
        header["i"] = _info_dict(pub.info)
    if pub.tags:
        header["t"] = dict(pub.tags)
    if pub.time:
        header["ts"] = pub.time
    return orjson.dumps(header) + b"\n" + pub.data


def decode_publication(raw: bytes, offset: int) -> Publication:
    header_raw, _, data = raw.partition(b"\n")
    header = orjson.loads(header_raw)
    info = header.get("i")
    return Publication(
        data=data,
        offset=offset,
        info=None if info is None else _info_from(info),
        tags=header.get("t"),
        time=header.get("ts", 0),
    )


def decode_message(raw: bytes) -> tuple[int, Publication | ClientInfo]:
    """A Pub/Sub message of a channel: ``(kind, publication or client info)``.

    Raises ``ValueError`` (or ``KeyError``) when it is not one of ours."""
    kind = raw[0]
    if kind == PUBLICATION:
        offset, _, body = raw[1:].partition(b":")
        return kind, decode_publication(body, int(offset))
    if kind in (JOIN, LEAVE):
        return kind, decode_info(raw[1:])
    raise ValueError(f"unknown message kind {kind!r}")
