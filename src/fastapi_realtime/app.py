"""The public :class:`Hub`: the hub core plus its FastAPI glue.

- :meth:`Hub.router` mounts the Centrifuge-protocol WebSocket endpoint
  (``/connection/websocket``, the SDKs' default);
- :meth:`Hub.api_router` mounts the Centrifugo-compatible HTTP server API (``/api/...``);
- :meth:`Hub.connection` is the tutorial-style API for hand-written endpoints;
- ``@hub.on_connect``, ``@hub.on_subscribe``, ``@hub.on_publish``, ``@hub.on_refresh``,
  ``@hub.on_message`` and ``@hub.rpc("name")`` register the in-process hooks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from fastapi import APIRouter, WebSocketException, params
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from . import api, streaming
from .client import ClientHandler
from .connection import Connection, close_at
from .hooks import OnConnect, OnMessage, OnPublish, OnRefresh, OnRPC, OnSubscribe, RPCContext
from .hub import Node
from .origins import OriginPolicy
from .protocol.codecs import CentrifugeCodec, ClientCodec, RawCodec
from .protocol.errors import Disconnect, ReplyError
from .protocol.messages import to_raw, validate_as
from .protocol.protobuf import ProtobufCodec
from .serverlimits import looser_server_limits
from .transports.websocket import websocket_transport

F = TypeVar("F", bound=Callable[..., Any])

JSON_SUBPROTOCOL = "centrifuge-json"
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"
NORMAL_CLOSURE = 1000
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011

log = logging.getLogger("fastapi_realtime.app")

_JSON: ClientCodec = CentrifugeCodec()
_UNI_JSON: ClientCodec = CentrifugeCodec(unidirectional=True)
_PROTOBUF: ClientCodec = ProtobufCodec()
"""The codecs of the protocol endpoints: they hold no per-connection state, so every
connection of an encoding shares one."""


class Hub(Node):
    """Channels, presence, history and fan-out for a FastAPI app.

    ::

        hub = Hub(HubSettings(...), auth=JWTAuth(secret="..."))
        app = FastAPI(lifespan=hub.lifespan)
        app.include_router(hub.router())
    """

    _server_limits_checked = False

    # -- hooks ------------------------------------------------------------------------

    def on_connect(self, func: OnConnect) -> OnConnect:
        """Register the connect hook (see :class:`~.hooks.ConnectContext`)."""
        self.hooks.on_connect = func
        return func

    def on_subscribe(self, func: OnSubscribe) -> OnSubscribe:
        """Register the subscribe hook; return a grant to allow, raise to refuse."""
        self.hooks.on_subscribe = func
        return func

    def on_publish(self, func: OnPublish) -> OnPublish:
        """Register the publish hook; it refines client publications the namespace allows
        (refuses them, or replaces their data)."""
        self.hooks.on_publish = func
        return func

    def on_refresh(self, func: OnRefresh) -> OnRefresh:
        """Register the refresh hook, called when a client refreshes its connection."""
        self.hooks.on_refresh = func
        return func

    def on_message(self, func: OnMessage) -> OnMessage:
        """Register the handler of client ``send`` messages."""
        self.hooks.on_message = func
        return func

    def rpc(self, method: str, *, model: Any = None) -> Callable[[OnRPC], OnRPC]:
        """Register an RPC handler: ``@hub.rpc("getUser") async def f(ctx, data): ...``.

        ``model``: a pydantic model class (anything with ``model_validate``); the handler then
        gets the validated instance as ``data``, and a call whose data does not match gets
        error 107 with the validation message.
        """

        def register(func: OnRPC) -> OnRPC:
            self.hooks.rpc[method] = func if model is None else _validating(model, func)
            return func

        return register

    # -- checks before accept -----------------------------------------------------------

    @functools.cached_property
    def origin_policy(self) -> OriginPolicy:
        """The origins ``settings.allowed_origins`` lets in (see :mod:`.origins`)."""
        return OriginPolicy(self.settings.allowed_origins)

    async def check_origin(self, websocket: WebSocket) -> None:
        """Refuse a WebSocket whose ``Origin`` is neither the same origin nor allowed by
        ``HubSettings.allowed_origins``: one WARNING line, then a close before accept (the
        client sees HTTP 403).

        Every endpoint of the hub (``router()``'s and ``hub.connection()``) calls it before
        accepting; use it as a dependency for endpoints that accept the WebSocket themselves:
        ``@app.websocket("/ws", dependencies=[Depends(hub.check_origin)])``.
        """
        if not self.origin_allowed(websocket, "a WebSocket"):
            raise WebSocketException(POLICY_VIOLATION, "origin not allowed")

    def origin_allowed(self, conn: HTTPConnection, what: str = "a request") -> bool:
        """Whether ``conn`` (a WebSocket or an HTTP request) comes from an origin
        ``HubSettings.allowed_origins`` lets in (or the same origin); a refusal is logged as
        one WARNING line naming ``what`` was refused."""
        origin, host = _header(conn, b"origin"), _header(conn, b"host")
        if self.origin_policy.allows(origin, host):
            return True
        client = conn.client
        log.warning(
            "refused %s to %s from origin %r (Host %r, client %s): not allowed by allowed_origins",
            what,
            conn.url.path,
            (origin or "")[:200],
            (host or "")[:200],
            client.host if client else "?",
            extra={
                "user": "",
                "client": "",
                "code": 403,
                "reason": "origin not allowed",
                "ip": client.host if client else "",
            },
        )
        return False

    async def _before_accept(self, websocket: WebSocket) -> None:
        """What every endpoint of the hub checks before it accepts a WebSocket."""
        self._check_server_limits(websocket)
        await self.check_origin(websocket)

    def _check_server_limits(self, websocket: WebSocket) -> None:
        """Once per hub: warn when the server lets through frames the hub would refuse."""
        if self._server_limits_checked:
            return
        self._server_limits_checked = True
        problem = looser_server_limits(getattr(websocket, "_receive", None), self.settings)
        if problem:
            log.warning("the server's WebSocket limits are looser than the hub's: %s", problem)

    # -- the protocol endpoint --------------------------------------------------------

    def router(
        self,
        path: str = "/connection/websocket",
        *,
        uni_path: str | None = None,
        uni_sse_path: str | None = None,
        uni_http_stream_path: str | None = None,
        http_stream_path: str | None = None,
        sse_path: str | None = None,
        emulation_path: str = "/emulation",
        dependencies: Sequence[params.Depends] | None = None,
    ) -> APIRouter:
        """An ``APIRouter`` with the Centrifuge-protocol WebSocket endpoint at ``path`` and,
        for each path given, a unidirectional endpoint: ``uni_path`` (WebSocket, e.g.
        ``"/connection/uni_websocket"``), ``uni_sse_path`` (Server-Sent Events, ``GET`` and
        ``POST``, e.g. ``"/connection/uni_sse"``) and ``uni_http_stream_path``
        (newline-delimited JSON, ``POST``, e.g. ``"/connection/uni_http_stream"``).

        ``http_stream_path`` (e.g. ``"/connection/http_stream"``) and ``sse_path`` (e.g.
        ``"/connection/sse"``) serve centrifuge-js's fallback transports of the same names;
        with either, ``emulation_path`` takes their clients' commands (see :mod:`.streaming`).

        The two WebSocket endpoints are plain Starlette routes: a connection skips FastAPI's
        dependency solving and its two ``AsyncExitStack`` objects, so FastAPI dependencies of the
        app or of ``include_router(..., dependencies=...)`` do not run on them (the hub checks
        the origin itself, and authenticates in the connect command; app dependencies are named
        in one WARNING line at the first connection). ``dependencies``: run these
        before each WebSocket connection is served (they are then FastAPI routes); the HTTP
        endpoints are FastAPI routes in any case."""
        router = APIRouter()
        _add_websocket_route(router, path, self.websocket_endpoint, dependencies)
        if uni_path is not None:
            _add_websocket_route(router, uni_path, self.uni_websocket_endpoint, dependencies)
        if uni_sse_path is not None:
            router.add_api_route(uni_sse_path, self.uni_sse_endpoint, methods=["GET", "POST"], include_in_schema=False)
        if uni_http_stream_path is not None:
            router.add_api_route(
                uni_http_stream_path, self.uni_http_stream_endpoint, methods=["POST"], include_in_schema=False
            )
        if http_stream_path is not None:
            router.add_api_route(http_stream_path, self.http_stream_endpoint, methods=["POST"], include_in_schema=False)
        if sse_path is not None:
            router.add_api_route(sse_path, self.sse_endpoint, methods=["GET", "POST"], include_in_schema=False)
        if http_stream_path is not None or sse_path is not None:
            router.add_api_route(emulation_path, self.emulation_endpoint, methods=["POST"], include_in_schema=False)
        return router

    async def http_stream_endpoint(self, request: Request) -> Response:
        """Serve one centrifuge-js ``http_stream`` client (see :mod:`.streaming`)."""
        return await streaming.http_stream(self, request)

    async def sse_endpoint(self, request: Request) -> Response:
        """Serve one centrifuge-js ``sse`` client (see :mod:`.streaming`)."""
        return await streaming.sse(self, request)

    async def emulation_endpoint(self, request: Request) -> Response:
        """Take one ``/emulation`` request of an ``http_stream`` or ``sse`` client."""
        return await streaming.emulation(self, request)

    async def uni_sse_endpoint(self, request: Request) -> Response:
        """Serve one unidirectional client as Server-Sent Events (see :mod:`.streaming`)."""
        return await streaming.uni_sse(self, request)

    async def uni_http_stream_endpoint(self, request: Request) -> Response:
        """Serve one unidirectional client as newline-delimited JSON (see :mod:`.streaming`)."""
        return await streaming.uni_http_stream(self, request)

    def api_router(self, *, api_key: str, prefix: str = "/api") -> APIRouter:
        """An ``APIRouter`` with the Centrifugo-compatible HTTP server API (``POST /api/publish``,
        ``/api/batch``, ...) protected by ``api_key``; see :mod:`fastapi_realtime.api`."""
        return api.make_router(self, api_key=api_key, prefix=prefix)

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        """Serve one Centrifuge-protocol client on ``websocket``: Protobuf encoding when it
        offers only the ``centrifuge-protobuf`` subprotocol or asks for it in the URL
        (``?cf_protocol=protobuf`` or ``?format=protobuf``, as Centrifugo), JSON otherwise."""
        await self._before_accept(websocket)
        subprotocol, codec = _choose_codec(websocket)
        await websocket.accept(subprotocol)
        served = self._serve_protocol(websocket, codec)
        if served is not None:
            await served

    async def uni_websocket_endpoint(self, websocket: WebSocket) -> None:
        """Serve one unidirectional client: it sends a JSON connect request as its first
        message (or in the ``cf_connect`` query parameter) and then only receives pushes."""
        await self._before_accept(websocket)
        await websocket.accept()
        initial = _query_param(websocket, "cf_connect")
        served = self._serve_protocol(websocket, _UNI_JSON, initial_connect=initial)
        if served is not None:
            await served

    def _serve_protocol(
        self, websocket: WebSocket, codec: ClientCodec, *, initial_connect: str | None = None
    ) -> Awaitable[None] | None:
        """What serves the accepted ``websocket`` to its end (returned, not awaited: the
        endpoint awaits it, and no frame of this method stays alive with the connection).

        ``None`` on our uvicorn WebSocket protocol: the connection is detached from the ASGI
        call, the session's handler task serves it, and the framework's call stack
        (middleware, routing, the endpoint) is released instead of held per connection."""
        transport = websocket_transport(websocket)
        try:
            session = self.open_session(transport, codec, user=None, client_ip=_client_ip(websocket))
        except Disconnect as exc:
            return transport.close(exc.code, exc.reason)
        handler = ClientHandler(self, session, codec, headers=websocket.headers, initial_connect=initial_connect)
        detach = getattr(transport, "detach", None)
        if detach is None:
            return self.serve(session, handler.serve)
        # The session's own pings (with a pong expected) tell a dead peer: no second timer.
        detach(keepalive=not (codec.expects_pong and self.settings.ping_interval > 0))
        session.start(handler.serve)
        return None

    # -- the tutorial API -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def connection(
        self,
        websocket: WebSocket,
        *,
        user: str = "",
        info: Any = None,
        subprotocol: str | None = None,
        ping: str | None = None,
        expire_at: int = 0,
    ) -> AsyncIterator[Connection]:
        """Accept ``websocket`` and manage it for the duration of the ``async with`` block.

        On exit, however the block ends, the connection leaves every room, its tasks are
        cancelled and the socket is closed; a client disconnect ends the block quietly.
        ``ping``: a text the server sends every ``ping_interval`` seconds, expecting any
        message back within ``pong_timeout`` (else close 3012); by default liveness is left to
        the WebSocket-level pings of the server (uvicorn's ``ws_ping_interval``).
        ``expire_at``: a Unix time (e.g. ``Credentials.expire_at`` of the token) after which
        the connection is closed with 3005 ``expired``. A :class:`ReplyError` escaping the
        block (a refused ``join``) closes the connection with 1008 and the error's message.

        Before accepting, it applies :meth:`check_origin`: a refused origin raises
        ``WebSocketException`` (HTTP 403 to the client) and the block does not run.
        """
        await self._before_accept(websocket)
        await websocket.accept(subprotocol)
        try:
            session = self.open_session(
                websocket_transport(websocket),
                RawCodec(ping=ping),
                user=user,
                conn_info=None if info is None else to_raw(info),
                client_ip=_client_ip(websocket),
            )
        except Disconnect as exc:
            raise WebSocketException(exc.code, exc.reason) from None  # Starlette closes with the code
        if ping is not None:
            session.any_frame_is_pong = True
            session.start_pinging()
        if expire_at:
            session.start_task(close_at(session, expire_at))
        # No task reads ahead: the block's own receive calls are the connection's only reader.
        try:
            yield Connection(self, session, websocket)
        except WebSocketDisconnect:
            pass
        except ReplyError as exc:
            session.close(POLICY_VIOLATION, exc.message[:120])
        except Exception:
            session.close(INTERNAL_ERROR, "internal error")
            raise
        finally:
            session.close(NORMAL_CLOSURE, "")
            await session.wait_ended()


def _add_websocket_route(
    router: APIRouter,
    path: str,
    endpoint: Callable[[WebSocket], Awaitable[None]],
    dependencies: Sequence[params.Depends] | None,
) -> None:
    """Serve ``endpoint`` at ``path``: as a FastAPI route when it has ``dependencies``, else as
    a Starlette route whose ASGI app is :class:`_WebSocketApp` (no per-connection wrapping;
    ``include_router`` keeps its prefix, and a :class:`WebSocketException` it raises reaches the
    app's exception handlers through Starlette's ``ExceptionMiddleware``)."""
    name = endpoint.__name__
    if dependencies:
        router.add_api_websocket_route(path, endpoint, name=name, dependencies=dependencies)
    else:
        router.routes.append(WebSocketRoute(path, _WebSocketApp(endpoint), name=name))


class _WebSocketApp:
    """The ASGI app of a hub WebSocket endpoint: ``endpoint(WebSocket(scope, receive, send))``
    (returned, not awaited here: one coroutine less alive per connection)."""

    __slots__ = ("_checked", "endpoint")

    def __init__(self, endpoint: Callable[[WebSocket], Awaitable[None]]) -> None:
        self.endpoint = endpoint
        self._checked = False

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if not self._checked:
            self._checked = True
            _warn_if_app_dependencies(scope)
        return self.endpoint(WebSocket(scope, receive, send))


def _warn_if_app_dependencies(scope: Scope) -> None:
    """Once per endpoint: say so when the app declares dependencies (``FastAPI(dependencies=...)``),
    which do not run on ``hub.router()``'s plain WebSocket routes."""
    router = getattr(scope.get("app"), "router", None)
    if getattr(router, "dependencies", None):
        log.warning(
            "the app's dependencies do not run on hub.router()'s WebSocket endpoints (%s); "
            "to run them before each connection, pass them as hub.router(dependencies=[...])",
            scope.get("path", "?"),
        )


def _header(conn: HTTPConnection, name: bytes) -> str | None:
    """The first ``name`` header of ``conn``, as ``conn.headers.get`` reads it (ASGI header names
    are lowercase), but straight from the scope: no ``KeyError`` raised for a missing one."""
    for key, value in conn.scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _query_param(websocket: WebSocket, name: str) -> str | None:
    """Query parameter ``name`` of ``websocket`` (without caching the parsed query on it)."""
    query = websocket.scope.get("query_string", b"")
    return QueryParams(query).get(name) if query else None


def _choose_codec(websocket: WebSocket) -> tuple[str | None, ClientCodec]:
    """The subprotocol to accept and the codec of a Centrifuge-protocol client (see
    :meth:`Hub.websocket_endpoint`)."""
    offered = [p for p in websocket.scope.get("subprotocols", ()) if p]
    raw_query = websocket.scope.get("query_string", b"")
    query = QueryParams(raw_query) if raw_query else None
    asked = {query.get("cf_protocol"), query.get("format")} if query is not None else set()
    if (PROTOBUF_SUBPROTOCOL in offered and JSON_SUBPROTOCOL not in offered) or "protobuf" in asked:
        return (PROTOBUF_SUBPROTOCOL if PROTOBUF_SUBPROTOCOL in offered else None), _PROTOBUF
    return (JSON_SUBPROTOCOL if JSON_SUBPROTOCOL in offered else None), _JSON


def _validating(model: Any, func: OnRPC) -> OnRPC:
    async def validated(ctx: RPCContext, data: Any) -> Any:
        return await func(ctx, validate_as(model, data))

    return validated


def _client_ip(websocket: WebSocket) -> str | None:
    """The peer's IP as the ASGI server reports it (the proxy's, unless the server is told to
    trust its forwarded headers: uvicorn ``--proxy-headers --forwarded-allow-ips``)."""
    client = websocket.scope.get("client")  # what ``websocket.client`` reads, without building it
    return str(client[0]) if client else None
