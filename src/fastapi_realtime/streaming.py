"""SSE and HTTP-streaming endpoints: unidirectional ones for clients with no SDK, and the
bidirectional emulation centrifuge-js falls back to when WebSocket is refused.

``GET /connection/uni_sse`` (``EventSource``, ``curl -N``) and ``POST
/connection/uni_http_stream`` (newline-delimited JSON) serve the same session as the
unidirectional WebSocket: the client sends one connect request, as the ``cf_connect`` query
parameter (URL-encoded JSON, as Centrifugo) or as the request body, then only listens. It
gets the same unwrapped pushes (``connect``, publications of its server-side subscriptions,
``{}`` pings every ``ping_interval``, a ``disconnect`` push before the stream ends).

Recovery after a reconnect: a connect request may carry stream positions in ``subs``
(``{"subs": {"news": {"recover": true, "offset": 5, "epoch": "..."}}}``, the offsets and
epochs of the ``connect`` push and of the publications), and an SSE reader's ``Last-Event-ID``
(see :mod:`.transports.sse`) is turned into such positions.

Bidirectional emulation (centrifuge-js transports ``http_stream`` and ``sse``, Centrifugo's
paths): ``POST /connection/http_stream`` (the connect command as the body) and ``GET
/connection/sse`` (``cf_connect``) open a stream of replies and pushes, as on the protocol's
WebSocket; the connect reply carries ``session`` (a secret key) and ``node`` (the hub's
``node_id``), and the client sends every later command in ``POST /emulation`` requests
``{"session": ..., "node": ..., "data": "<commands, newline-joined>"}``. The request reaches
the session on this hub, or through the broker on the hub named by ``node``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from .brokers.base import BrokerError
from .client import ClientHandler
from .exceptions import HubNotRunning
from .protocol.codecs import CentrifugeCodec
from .protocol.errors import Disconnect
from .transports.sse import Encoder, SSEEncoder, json_lines, parse_last_event_id, sse_replies
from .transports.stream import EmulatedTransport, StreamTransport

if TYPE_CHECKING:
    from .app import Hub

log = logging.getLogger("fastapi_realtime.streaming")

SSE_MEDIA_TYPE = "text/event-stream"
JSON_LINES_MEDIA_TYPE = "application/x-ndjson"


class BadConnectRequest(ValueError):
    """The connect request of a stream cannot be read (HTTP 400)."""


class _StreamResponse(Response):
    """A response whose body is a session's stream of pushes."""

    def __init__(
        self, hub: Hub, request: Request, connect: dict[str, Any], encoder: Encoder, media_type: str, transport: str
    ) -> None:
        super().__init__(media_type=media_type)
        self.hub, self.request, self.connect, self.encoder = hub, request, connect, encoder
        self.transport_name = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = StreamTransport(receive, send, self.encoder)
        assert self.media_type is not None
        await transport.start(self.media_type)
        codec = CentrifugeCodec(unidirectional=True)
        client = self.request.client
        try:
            session = self.hub.open_session(transport, codec, user=None, client_ip=client.host if client else None)
        except Disconnect as exc:
            await transport.send(codec.disconnect(exc.code, exc.reason) or "")
            await transport.close(exc.code, exc.reason)
            return
        handler = ClientHandler(
            self.hub,
            session,
            codec,
            transport_name=self.transport_name,
            headers=self.request.headers,
            initial_connect=orjson.dumps(self.connect).decode(),
        )
        try:
            await self.hub.serve(session, handler.serve)
        finally:
            await transport.close(session.close_code, session.close_reason)


def _refused_origin(hub: Hub, request: Request) -> Response | None:
    if hub.origin_allowed(request, "a stream"):
        return None
    return PlainTextResponse("origin not allowed", status_code=403)


async def _read_body(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadConnectRequest(f"the connect request is over client_max_frame_bytes ({limit} bytes)")
    return bytes(body)


async def connect_request(request: Request, limit: int) -> dict[str, Any]:
    """The connect request of a stream: the request body (POST) or ``cf_connect`` (JSON).
    Neither: ``{}`` (anonymous, if the hub allows it)."""
    raw: bytes | str = await _read_body(request, limit) if request.method == "POST" else b""
    if not raw:
        raw = request.query_params.get("cf_connect", "")
        if len(raw) > limit:
            raise BadConnectRequest(f"cf_connect is over client_max_frame_bytes ({limit} bytes)")
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadConnectRequest("the connect request must be JSON (a body or the cf_connect parameter)") from None
    if not isinstance(body, dict):
        raise BadConnectRequest("the connect request must be a JSON object")
    return body


def _with_positions(connect: dict[str, Any], last_event_id: str, max_bytes: int) -> tuple[dict[str, Any], Any]:
    """Add the positions of a ``Last-Event-ID`` to the connect request's ``subs`` (the
    request's own positions win)."""
    positions = parse_last_event_id(last_event_id, max_bytes)
    subs = connect.get("subs")
    subs = dict(subs) if isinstance(subs, dict) else {}
    for channel, (offset, epoch) in positions.items():
        subs.setdefault(channel, {"recover": True, "offset": offset, "epoch": epoch})
    return {**connect, "subs": subs}, positions


async def uni_sse(hub: Hub, request: Request) -> Response:
    """``GET`` (or ``POST``) ``/connection/uni_sse``: a unidirectional session as Server-Sent Events."""
    refused = _refused_origin(hub, request)
    if refused is not None:
        return refused
    settings = hub.settings
    try:
        connect = await connect_request(request, settings.client_max_frame_bytes)
        positions = None
        last_event_id = request.headers.get("last-event-id")
        if last_event_id:
            connect, positions = _with_positions(connect, last_event_id, settings.sse_event_id_max_bytes)
    except ValueError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    encoder = SSEEncoder(settings.sse_event_id_max_bytes, positions)
    return _StreamResponse(hub, request, connect, encoder, SSE_MEDIA_TYPE, "uni_sse")


async def uni_http_stream(hub: Hub, request: Request) -> Response:
    """``POST /connection/uni_http_stream``: a unidirectional session as newline-delimited JSON."""
    refused = _refused_origin(hub, request)
    if refused is not None:
        return refused
    try:
        connect = await connect_request(request, hub.settings.client_max_frame_bytes)
    except BadConnectRequest as exc:
        return PlainTextResponse(str(exc), status_code=400)
    return _StreamResponse(hub, request, connect, json_lines, JSON_LINES_MEDIA_TYPE, "uni_http_stream")


class _EmulatedResponse(Response):
    """A response whose body is a bidirectional emulation session's replies and pushes."""

    def __init__(self, hub: Hub, request: Request, connect: bytes, encoder: Encoder, media_type: str) -> None:
        super().__init__(media_type=media_type)
        self.hub, self.request, self.connect, self.encoder = hub, request, connect, encoder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        transport = EmulatedTransport(
            receive, send, self.encoder, self.connect.decode(), hub.settings.emulation_queue_max_requests
        )
        assert self.media_type is not None
        await transport.start(self.media_type)
        codec = CentrifugeCodec()
        client = self.request.client
        try:
            session = hub.open_session(transport, codec, user=None, client_ip=client.host if client else None)
        except Disconnect as exc:
            await transport.close(exc.code, exc.reason)
            return
        key = secrets.token_urlsafe(24)
        transport_name = "sse" if self.encoder is sse_replies else "http_stream"
        handler = ClientHandler(
            hub,
            session,
            codec,
            transport_name=transport_name,
            headers=self.request.headers,
            emulation_session=key,
        )
        hub.register_emulated(key, transport.put)
        watcher = asyncio.create_task(transport.watch_disconnect(), name=f"session-{session.id}-disconnect")
        try:
            await hub.serve(session, handler.serve)
        finally:
            hub.unregister_emulated(key)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await transport.close(session.close_code, session.close_reason)


async def _emulated_stream(hub: Hub, request: Request, encoder: Encoder, media_type: str) -> Response:
    refused = _refused_origin(hub, request)
    if refused is not None:
        return refused
    if request.headers.get("content-type", "").startswith("application/octet-stream"):
        return PlainTextResponse("only the JSON protocol is served over emulation", status_code=415)
    limit = hub.settings.client_max_frame_bytes
    try:
        body = await _read_body(request, limit) if request.method == "POST" else b""
    except BadConnectRequest as exc:
        return PlainTextResponse(str(exc), status_code=400)
    connect = body or request.query_params.get("cf_connect", "").encode()
    if not connect:
        return PlainTextResponse("the connect command is missing (request body or cf_connect)", status_code=400)
    if len(connect) > limit:
        return PlainTextResponse(f"cf_connect is over client_max_frame_bytes ({limit} bytes)", status_code=400)
    return _EmulatedResponse(hub, request, connect, encoder, media_type)


async def http_stream(hub: Hub, request: Request) -> Response:
    """``POST /connection/http_stream``: centrifuge-js's ``http_stream`` transport (replies and
    pushes as newline-delimited JSON)."""
    return await _emulated_stream(hub, request, json_lines, JSON_LINES_MEDIA_TYPE)


async def sse(hub: Hub, request: Request) -> Response:
    """``GET`` (or ``POST``) ``/connection/sse``: centrifuge-js's ``sse`` transport."""
    return await _emulated_stream(hub, request, sse_replies, SSE_MEDIA_TYPE)


async def emulation(hub: Hub, request: Request) -> Response:
    """``POST /emulation``: one client request of an emulation session: 204 once handed over,
    400 when malformed, 413 over ``client_max_frame_bytes``, 429 when the session has
    ``emulation_queue_max_requests`` waiting already, 503 when another node's request cannot
    be routed (the broker is down). A ``node`` other than this hub goes through the broker;
    a session that is gone is answered 204 (its stream has ended, the client reconnects)."""
    refused = _refused_origin(hub, request)
    if refused is not None:
        return refused
    limit = hub.settings.client_max_frame_bytes
    try:
        raw = await _read_body(request, limit + 1024)  # the data, plus the session and node
    except BadConnectRequest:
        return PlainTextResponse(f"the request is over client_max_frame_bytes ({limit} bytes)", status_code=413)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return PlainTextResponse("the emulation request must be JSON", status_code=400)
    match body:
        case {"session": str(key), "node": str(node), "data": str(data)} if key and node:
            pass
        case _:
            return PlainTextResponse(
                'the emulation request must be {"session": str, "node": str, "data": str}', status_code=400
            )
    if len(data) > limit:
        return PlainTextResponse(f"the request is over client_max_frame_bytes ({limit} bytes)", status_code=413)
    try:
        delivered = await hub.emulate(node, key, data)
    except (BrokerError, HubNotRunning) as exc:  # the client closes the transport and reconnects
        log.warning("routing an emulation request to node %s failed: %r", node[:40], exc)
        return PlainTextResponse("the node of this session cannot be reached", status_code=503)
    if not delivered:
        return PlainTextResponse(
            "too many requests wait for this session (emulation_queue_max_requests)", status_code=429
        )
    return Response(status_code=204)
