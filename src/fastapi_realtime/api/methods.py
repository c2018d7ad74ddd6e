"""The server API methods: each decodes its request, calls the hub, and encodes the result.

Nothing here knows HTTP: the same table serves the single-method routes and ``batch``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from ..brokers.base import BrokerError
from ..exceptions import FeatureNotEnabled
from ..hub import Node
from ..protocol.codes import DisconnectCode, ErrorCode
from ..protocol.errors import ReplyError
from ..protocol.messages import Binary, ClientInfo, StreamPosition
from .models import (
    APIRequest,
    BatchRequest,
    BroadcastRequest,
    BroadcastResult,
    ChannelRequest,
    ChannelsRequest,
    ChannelsResult,
    DisconnectRequest,
    EmptyResult,
    HistoryRequest,
    HistoryResult,
    InfoRequest,
    InfoResult,
    PresenceResult,
    PresenceStatsResult,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)

log = logging.getLogger("fastapi_realtime.api")

MAX_REASON_BYTES = 123
"""Longest disconnect reason a WebSocket close frame carries."""

# -- the methods: decode, call the hub, encode ------------------------------------------

Result = dict[str, Any]


def _bad_request(message: str) -> ReplyError:
    return ReplyError(ErrorCode.BAD_REQUEST, f"bad request: {message}")


def _payload(req: PublishRequest | BroadcastRequest) -> Any:
    """The publication payload of a publish or broadcast: ``data``, or ``b64data`` decoded."""
    if req.b64data is None:
        if "data" not in req.model_fields_set:
            raise _bad_request("data required")
        return req.data
    if req.data is not None:
        raise _bad_request("give data or b64data, not both")
    try:
        raw = base64.b64decode(req.b64data, validate=True)
    except binascii.Error:
        raise _bad_request("b64data is not valid base64") from None
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return Binary(raw)  # for Protobuf clients; a JSON client that would receive it gets 3506
    return raw


def _info(info: ClientInfo) -> Result:
    out: Result = {"user": info.user, "client": info.client}
    if info.conn_info is not None:
        out["conn_info"] = orjson.Fragment(info.conn_info)
    if info.chan_info is not None:
        out["chan_info"] = orjson.Fragment(info.chan_info)
    return out


async def _publish_into(hub: Node, channel: str, data: Any, req: PublishRequest | BroadcastRequest) -> Result:
    position = await hub.publish(
        channel, data, tags=req.tags, skip_history=req.skip_history, idempotency_key=req.idempotency_key
    )
    return {"offset": position.offset, "epoch": position.epoch}


async def _publish(hub: Node, req: PublishRequest) -> Result:
    return await _publish_into(hub, req.channel, _payload(req), req)


async def _broadcast(hub: Node, req: BroadcastRequest) -> Result:
    if not req.channels:
        raise _bad_request("channels required")
    if len(req.channels) > hub.settings.api_max_commands:
        raise _bad_request(f"more than {hub.settings.api_max_commands} channels")
    data = _payload(req)
    replies = await asyncio.gather(*(reply(_publish_into(hub, channel, data, req)) for channel in req.channels))
    return {"responses": replies}


async def _subscribe(hub: Node, req: SubscribeRequest) -> Result:
    await hub.subscribe_user(req.user, req.channel, client=req.client or None)
    return {}


async def _unsubscribe(hub: Node, req: UnsubscribeRequest) -> Result:
    await hub.unsubscribe_user(req.user, req.channel, client=req.client or None)
    return {}


async def _disconnect(hub: Node, req: DisconnectRequest) -> Result:
    code, reason = int(DisconnectCode.FORCE_DISCONNECT), None
    if req.disconnect is not None and req.disconnect.code:
        code, reason = req.disconnect.code, req.disconnect.reason or None
        if not 3000 <= code <= 4999:
            raise _bad_request("disconnect.code must be 3000-4999")
        if reason is not None and len(reason.encode()) > MAX_REASON_BYTES:
            raise _bad_request(f"disconnect.reason longer than {MAX_REASON_BYTES} bytes")
    await hub.disconnect(req.user, code, reason, client=req.client or None, whitelist=req.whitelist or ())
    return {}


async def _refresh(hub: Node, req: RefreshRequest) -> Result:
    await hub.refresh_user(req.user, client=req.client or None, expired=req.expired, expire_at=req.expire_at)
    return {}


async def _presence(hub: Node, req: ChannelRequest) -> Result:
    entries = await hub.presence(req.channel)
    return {"presence": {client: _info(info) for client, info in entries.items()}}


async def _presence_stats(hub: Node, req: ChannelRequest) -> Result:
    clients, users = await hub.presence_stats(req.channel)
    return {"num_clients": clients, "num_users": users}


async def _history(hub: Node, req: HistoryRequest) -> Result:
    limit = None if req.limit is not None and req.limit < 0 else (req.limit or 0)
    since = None if req.since is None else StreamPosition(req.since.offset, req.since.epoch)
    result = await hub.read_history(req.channel, since=since, limit=limit, reverse=req.reverse)
    pubs = []
    for pub in result.publications:
        item: Result = {"offset": pub.offset}
        if isinstance(pub.data, Binary):
            item["data"], item["b64data"] = None, base64.b64encode(pub.data).decode()
        else:
            item["data"] = orjson.Fragment(pub.data)
        if pub.tags:
            item["tags"] = dict(pub.tags)
        if pub.info is not None:
            item["info"] = _info(pub.info)
        pubs.append(item)
    return {"publications": pubs, "offset": result.position.offset, "epoch": result.position.epoch}


async def _history_remove(hub: Node, req: ChannelRequest) -> Result:
    await hub.remove_history(req.channel)
    return {}


async def _channels(hub: Node, req: ChannelsRequest) -> Result:
    counts = hub.channel_counts(req.pattern)
    return {"channels": {name: {"num_clients": n} for name, n in counts.items()}}


async def _node_info(hub: Node, req: InfoRequest) -> Result:
    return {"nodes": [dataclasses.asdict(hub.info())]}


@dataclass(frozen=True, slots=True)
class Method:
    """One server API method: its request model, its result model and what it does."""

    request: type[APIRequest]
    result: type[BaseModel]
    call: Callable[[Node, Any], Awaitable[Result]]
    summary: str


METHODS: Mapping[str, Method] = {
    "publish": Method(PublishRequest, PublishResult, _publish, "Publish into a channel"),
    "broadcast": Method(BroadcastRequest, BroadcastResult, _broadcast, "Publish into many channels"),
    "subscribe": Method(SubscribeRequest, EmptyResult, _subscribe, "Subscribe a user's connections"),
    "unsubscribe": Method(UnsubscribeRequest, EmptyResult, _unsubscribe, "Unsubscribe a user's connections"),
    "disconnect": Method(DisconnectRequest, EmptyResult, _disconnect, "Disconnect a user's connections"),
    "refresh": Method(RefreshRequest, EmptyResult, _refresh, "Expire or extend a user's connections"),
    "presence": Method(ChannelRequest, PresenceResult, _presence, "Who is in a channel"),
    "presence_stats": Method(ChannelRequest, PresenceStatsResult, _presence_stats, "How many are in a channel"),
    "history": Method(HistoryRequest, HistoryResult, _history, "A channel's history"),
    "history_remove": Method(ChannelRequest, EmptyResult, _history_remove, "Drop a channel's history"),
    "channels": Method(ChannelsRequest, ChannelsResult, _channels, "Channels with subscribers on this hub"),
    "info": Method(InfoRequest, InfoResult, _node_info, "This hub's counts"),
}


def error(code: int, message: str) -> Result:
    """A reply carrying an error, in Centrifugo's shape."""
    return {"error": {"code": code, "message": message}}


async def reply(call: Awaitable[Result]) -> Result:
    """``{"result": ...}`` or, when the call fails, ``{"error": ...}``."""
    try:
        return {"result": await call}
    except ReplyError as exc:
        return error(exc.code, exc.message)
    except FeatureNotEnabled as exc:  # the namespace keeps no history / presence
        return error(ErrorCode.NOT_AVAILABLE, str(exc))
    except BrokerError as exc:  # Redis is down, say: temporary
        log.warning("server API call failed: %s", exc)
        return error(ErrorCode.INTERNAL, "internal server error")
    except Exception:
        log.exception("server API call failed")
        return error(ErrorCode.INTERNAL, "internal server error")


def describe(errors: list[Any], skip: int) -> str:
    """One line from pydantic's errors; ``skip`` leading parts of each location are dropped."""
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err["loc"][skip:]) or "body"
        what = err["msg"]
        if err["type"] == "extra_forbidden":
            what = "not supported by this server"
        elif err["type"] == "json_invalid":
            where, what = "body", f"invalid JSON: {err.get('ctx', {}).get('error', what)}"
        parts.append(f"{where}: {what}")
    return "bad request: " + "; ".join(parts)


async def run_batch(hub: Node, req: BatchRequest) -> list[Result]:
    """One reply per command, in order: ``{"<method>": result}`` or ``{"error": ...}``."""

    async def one(command: dict[str, Any]) -> Result:
        if len(command) != 1:
            return error(ErrorCode.BAD_REQUEST, "bad request: a command is an object with exactly one method key")
        [(name, params)] = command.items()
        method = METHODS.get(name)
        if method is None:
            return error(ErrorCode.METHOD_NOT_FOUND, f"method not found: {name}")
        try:
            parsed = method.request.model_validate(params)
        except ValidationError as exc:
            return error(ErrorCode.BAD_REQUEST, describe(exc.errors(), 0))
        answer = await reply(method.call(hub, parsed))
        return {name: answer["result"]} if "result" in answer else answer

    if req.parallel:
        return list(await asyncio.gather(*(one(c) for c in req.commands)))
    return [await one(c) for c in req.commands]
