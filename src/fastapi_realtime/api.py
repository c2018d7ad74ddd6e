"""The HTTP server API, compatible with Centrifugo's: ``POST /api/<method>`` with a JSON body.

Mount it with ``app.include_router(hub.api_router(api_key="..."))``. Every method calls the
same :class:`~.hub.Node` method that Python code calls in-process; this module only checks the
key, decodes, and encodes the reply in Centrifugo's shapes, so Centrifugo's clients (the
``cent`` package on PyPI, for one) work against it unchanged.

Replies, as Centrifugo sends them:

- success: HTTP 200 ``{"result": {...}}``;
- a method's error (unknown channel, history off, a field missing or of the wrong type):
  HTTP 200 ``{"error": {"code": 102, "message": "unknown channel"}}``;
- a body that is not a JSON object (or a ``batch`` that cannot run at all): HTTP 400 with
  ``{"error": {"code": 107, ...}}``; a body over ``api_max_body_bytes``: HTTP 413, same shape;
- a missing or wrong key: HTTP 401 and nothing is done.

``batch`` answers ``{"replies": [{"publish": {...}}, {"error": {...}}, ...]}``, one reply per
command in order; ``broadcast`` answers one ``{"result"}`` or ``{"error"}`` per channel.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hmac
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import APIRouter, Body, HTTPException, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .hub import Node
from .protocol.codes import DisconnectCode, ErrorCode
from .protocol.errors import ReplyError
from .protocol.messages import ClientInfo, StreamPosition

log = logging.getLogger("fastapi_realtime.api")

MAX_REASON_BYTES = 123
"""Longest disconnect reason a WebSocket close frame carries."""

# -- request models ---------------------------------------------------------------------


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishRequest(_Request):
    """Publish ``data`` (or ``b64data``) into ``channel``."""

    channel: str
    data: Any = Field(None, description="Any JSON value; required unless b64data is given.")
    b64data: str | None = Field(
        None,
        description="Base64 of the payload, as Centrifugo accepts it. Connections here speak JSON, which "
        "cannot carry binary: the decoded bytes must be JSON text (else error 107).",
    )
    skip_history: bool = Field(False, description="Deliver only; keep nothing in history (offset 0).")
    tags: dict[str, str] | None = Field(None, description="Delivered with the publication.")
    idempotency_key: str | None = Field(
        None,
        description="A publish repeating this key for the channel within idempotency_window seconds "
        "is not delivered again and returns the first one's result.",
    )


class BroadcastRequest(_Request):
    """Publish the same payload into each of ``channels``."""

    channels: list[str]
    data: Any = Field(None, description="Any JSON value; required unless b64data is given.")
    b64data: str | None = Field(None, description="As in publish.")
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str | None = Field(None, description="As in publish, per channel.")


class SubscribeRequest(_Request):
    """Subscribe the connections of ``user`` (only ``client`` if given) to ``channel``."""

    user: str
    channel: str
    client: str | None = None


class UnsubscribeRequest(SubscribeRequest):
    """Unsubscribe the connections of ``user`` (only ``client`` if given) from ``channel``."""


class DisconnectObject(_Request):
    """A close code (3000-4999; 0: 3503 ``force disconnect``) and reason (at most 123 bytes)."""

    code: int = 0
    reason: str = ""


class DisconnectRequest(_Request):
    """Disconnect the connections of ``user`` (only ``client``; none in ``whitelist``)."""

    user: str
    client: str | None = None
    whitelist: list[str] | None = None
    disconnect: DisconnectObject | None = None


class RefreshRequest(_Request):
    """Expire the connections of ``user`` now, or give them a new expiry time."""

    user: str
    client: str | None = None
    expired: bool = Field(False, description="Close them now with 3005.")
    expire_at: int = Field(0, ge=0, description="Their new expiry, Unix seconds (0: never).")


class ChannelRequest(_Request):
    """A request naming one channel."""

    channel: str


class StreamPositionModel(BaseModel):
    """A stream position: the offset of a publication and the stream's epoch."""

    offset: int = 0
    epoch: str = ""


class HistoryRequest(_Request):
    """Read the history of ``channel``."""

    channel: str
    limit: int | None = Field(None, description="How many publications (unset or 0: none, only the position; -1: all).")
    since: StreamPositionModel | None = Field(None, description="Only publications after this position.")
    reverse: bool = Field(False, description="Newest first.")


class ChannelsRequest(_Request):
    """List the channels with subscribers."""

    pattern: str | None = Field(None, description="Keep names matching it: shell-style *, ?, [...].")


class InfoRequest(_Request):
    """No parameters."""


class BatchRequest(_Request):
    """Run several commands in one request."""

    commands: list[dict[str, Any]] = Field(
        description='Each an object with one key, the method, and its request: {"publish": {"channel": ...}}.'
    )
    parallel: bool = Field(False, description="Run the commands concurrently (replies stay in order).")


# -- response models (for the OpenAPI docs; replies are encoded directly) ---------------

R = TypeVar("R")


class Error(BaseModel):
    """A Centrifugo error: a code of the client protocol's table and a message."""

    code: int
    message: str


class Reply(BaseModel, Generic[R]):
    """Either ``result`` or ``error``."""

    error: Error | None = None
    result: R | None = None


class PublishResult(BaseModel):
    offset: int = 0
    epoch: str = ""


class BroadcastResult(BaseModel):
    responses: list[Reply[PublishResult]]


class EmptyResult(BaseModel):
    pass


class ClientInfoModel(BaseModel):
    user: str
    client: str
    conn_info: Any = None
    chan_info: Any = None


class PresenceResult(BaseModel):
    presence: dict[str, ClientInfoModel]


class PresenceStatsResult(BaseModel):
    num_clients: int
    num_users: int


class PublicationModel(BaseModel):
    data: Any
    offset: int = 0
    tags: dict[str, str] | None = None
    info: ClientInfoModel | None = None


class HistoryResult(BaseModel):
    publications: list[PublicationModel]
    offset: int = 0
    epoch: str = ""


class ChannelInfoModel(BaseModel):
    num_clients: int


class ChannelsResult(BaseModel):
    channels: dict[str, ChannelInfoModel]


class NodeResult(BaseModel):
    uid: str
    name: str
    version: str
    num_clients: int
    num_users: int
    num_channels: int
    num_subs: int
    uptime: int


class InfoResult(BaseModel):
    nodes: list[NodeResult]


class BatchResponse(BaseModel):
    replies: list[dict[str, Any]] = Field(
        description='One per command, in order: {"<method>": result} or {"error": {...}}.'
    )


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
        orjson.loads(raw)
    except binascii.Error:
        raise _bad_request("b64data is not valid base64") from None
    except orjson.JSONDecodeError:
        raise _bad_request("b64data must decode to JSON text: connections here cannot carry binary") from None
    return raw


def _info(info: ClientInfo) -> Result:
    out: Result = {"user": info.user, "client": info.client}
    if info.conn_info is not None:
        out["conn_info"] = orjson.Fragment(info.conn_info)
    if info.chan_info is not None:
        out["chan_info"] = orjson.Fragment(info.chan_info)
    return out


async def _publish(hub: Node, req: PublishRequest) -> Result:
    position = await hub.publish(
        req.channel,
        _payload(req),
        tags=req.tags,
        skip_history=req.skip_history,
        idempotency_key=req.idempotency_key,
    )
    return {"offset": position.offset, "epoch": position.epoch}


async def _broadcast(hub: Node, req: BroadcastRequest) -> Result:
    if not req.channels:
        raise _bad_request("channels required")
    if len(req.channels) > hub.settings.api_max_commands:
        raise _bad_request(f"more than {hub.settings.api_max_commands} channels")
    data = _payload(req)

    async def one(channel: str) -> Result:
        one_req = PublishRequest.model_construct(
            channel=channel,
            data=data,
            skip_history=req.skip_history,
            tags=req.tags,
            idempotency_key=req.idempotency_key,
        )
        return await _reply(_publish(hub, one_req))

    return {"responses": await asyncio.gather(*(one(channel) for channel in req.channels))}


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
    result = await hub.history(req.channel, since=since, limit=limit, reverse=req.reverse)
    pubs = []
    for pub in result.publications:
        item: Result = {"data": orjson.Fragment(pub.data), "offset": pub.offset}
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


async def _info_method(hub: Node, req: InfoRequest) -> Result:
    return {"nodes": [dataclasses.asdict(hub.info())]}


@dataclass(frozen=True, slots=True)
class Method:
    """One server API method: its request model, its result model and what it does."""

    request: type[_Request]
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
    "info": Method(InfoRequest, InfoResult, _info_method, "This hub's counts"),
}


def _error(code: int, message: str) -> Result:
    return {"error": {"code": code, "message": message}}


async def _reply(call: Awaitable[Result]) -> Result:
    """``{"result": ...}`` or, when the call fails, ``{"error": ...}``."""
    try:
        return {"result": await call}
    except ReplyError as exc:
        return _error(exc.code, exc.message)
    except Exception:
        log.exception("server API call failed")
        return _error(ErrorCode.INTERNAL, "internal server error")


def _describe(errors: list[Any], skip: int) -> str:
    """One line from pydantic's errors; ``skip`` leading parts of each location are dropped."""
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err["loc"][skip:]) or "body"
        what = "not supported by this server" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{where}: {what}")
    return "bad request: " + "; ".join(parts)


async def _batch(hub: Node, req: BatchRequest) -> list[Result]:
    async def one(command: dict[str, Any]) -> Result:
        if len(command) != 1:
            return _error(ErrorCode.BAD_REQUEST, "bad request: a command is an object with exactly one method key")
        [(name, params)] = command.items()
        method = METHODS.get(name)
        if method is None:
            return _error(ErrorCode.METHOD_NOT_FOUND, f"method not found: {name}")
        try:
            parsed = method.request.model_validate(params)
        except ValidationError as exc:
            return _error(ErrorCode.BAD_REQUEST, _describe(exc.errors(), 0))
        reply = await _reply(method.call(hub, parsed))
        return {name: reply["result"]} if "result" in reply else reply

    if req.parallel:
        return list(await asyncio.gather(*(one(c) for c in req.commands)))
    return [await one(c) for c in req.commands]


# -- HTTP: the key, the body limit, the error shapes ------------------------------------


def _json(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


class _BodyTooLarge(HTTPException):
    """Raised while FastAPI reads the body; an ``HTTPException`` so that FastAPI lets it through."""

    def __init__(self) -> None:
        super().__init__(413)


class _LimitedRequest(Request):
    """A request whose body is read up to ``max_bytes`` (the FastAPI-documented way to
    customise how a route reads its body)."""

    max_bytes = 0

    async def body(self) -> bytes:
        if not hasattr(self, "_body"):
            declared = self.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise _BodyTooLarge
            chunks, size = [], 0
            async for chunk in self.stream():
                size += len(chunk)
                if size > self.max_bytes:
                    raise _BodyTooLarge
                chunks.append(chunk)
            self._body = b"".join(chunks)
        return self._body


@dataclass(frozen=True, slots=True)
class _Guard:
    key: bytes
    max_body_bytes: int

    def authorized(self, request: Request) -> bool:
        """``X-API-Key: <key>`` or ``Authorization: apikey <key>``, compared in constant time."""
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            given = value.strip() if scheme.lower() == "apikey" else None
        return given is not None and hmac.compare_digest(given.encode(), self.key)


class _GuardedRoute(APIRoute):
    """Checks the key before anything else, limits the body, and answers validation errors
    in Centrifugo's shape instead of FastAPI's 422."""

    guard: _Guard
    whole_request_errors = False
    """Whether every validation error is the request's (HTTP 400), as in ``batch``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        guard, whole = self.guard, self.whole_request_errors

        async def guarded(request: Request) -> Response:
            if not guard.authorized(request):
                return _json(_error(ErrorCode.UNAUTHORIZED, "unauthorized: missing or wrong API key"), 401)
            limited = _LimitedRequest(request.scope, request.receive)
            limited.max_bytes = guard.max_body_bytes
            try:
                return await handler(limited)
            except _BodyTooLarge:
                message = f"bad request: body larger than {guard.max_body_bytes} bytes"
                return _json(_error(ErrorCode.BAD_REQUEST, message), 413)
            except RequestValidationError as exc:
                errors = list(exc.errors())
                undecodable = whole or any(e["type"] == "json_invalid" or len(e["loc"]) < 2 for e in errors)
                return _json(_error(ErrorCode.BAD_REQUEST, _describe(errors, 1)), 400 if undecodable else 200)

        return guarded


def _endpoint(hub: Node, name: str, method: Method) -> Callable[..., Awaitable[Response]]:
    async def endpoint(body: Any) -> Response:
        return _json(await _reply(method.call(hub, body or method.request())))

    optional = not any(f.is_required() for f in method.request.model_fields.values())
    default = Body(None) if optional else Body(...)
    param = inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=method.request, default=default)
    endpoint.__signature__ = inspect.Signature([param], return_annotation=Response)  # type: ignore[attr-defined]
    endpoint.__name__ = f"api_{name}"
    return endpoint


_key_scheme = APIKeyHeader(name="X-API-Key", auto_error=False, description="Or: Authorization: apikey <key>")


def make_router(hub: Node, *, api_key: str, prefix: str = "/api") -> APIRouter:
    """The server API router for ``hub``, protected by ``api_key`` (see the module docstring)."""
    if not api_key:
        raise ValueError("api_key must not be empty")
    guard = _Guard(api_key.encode(), hub.settings.api_max_body_bytes)
    route_class: type[_GuardedRoute] = type("APIKeyRoute", (_GuardedRoute,), {"guard": guard})
    batch_class: type[_GuardedRoute] = type("APIKeyBatchRoute", (route_class,), {"whole_request_errors": True})
    # The scheme only documents the key in OpenAPI; the route class enforces it, before the body is read.
    router = APIRouter(
        prefix=prefix, route_class=route_class, tags=["server API"], dependencies=[Security(_key_scheme)]
    )
    for name, method in METHODS.items():
        router.add_api_route(
            f"/{name}",
            _endpoint(hub, name, method),
            methods=["POST"],
            response_model=Reply[method.result],  # type: ignore[name-defined]
            summary=method.summary,
            name=f"api_{name}",
        )

    async def batch(body: Annotated[BatchRequest, Body()]) -> Response:
        if len(body.commands) > hub.settings.api_max_commands:
            message = f"bad request: more than {hub.settings.api_max_commands} commands"
            return _json(_error(ErrorCode.BAD_REQUEST, message), 400)
        return _json({"replies": await _batch(hub, body)})

    router.add_api_route(
        "/batch",
        batch,
        methods=["POST"],
        response_model=BatchResponse,
        summary="Several commands in one request",
        name="api_batch",
        route_class_override=batch_class,
    )
    return router
