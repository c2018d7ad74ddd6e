"""The public :class:`Hub`: the hub core plus its FastAPI glue.

- :meth:`Hub.router` mounts the Centrifuge-protocol WebSocket endpoint
  (``/connection/websocket``, the SDKs' default);
- :meth:`Hub.connection` is the tutorial-style API for hand-written endpoints;
- ``@hub.on_connect``, ``@hub.on_subscribe``, ``@hub.on_publish``, ``@hub.on_refresh``,
  ``@hub.on_message`` and ``@hub.rpc("name")`` register the in-process hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, WebSocketException
from starlette.websockets import WebSocket, WebSocketDisconnect

from .client import ClientHandler
from .connection import Connection
from .hooks import OnConnect, OnMessage, OnPublish, OnRefresh, OnRPC, OnSubscribe
from .hub import Node
from .protocol.codecs import CentrifugeCodec, RawCodec
from .protocol.codes import DisconnectCode
from .protocol.errors import Disconnect, ReplyError
from .protocol.messages import to_raw
from .session import Session
from .transports.websocket import WebSocketTransport

F = TypeVar("F", bound=Callable[..., Any])

JSON_SUBPROTOCOL = "centrifuge-json"
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"
NORMAL_CLOSURE = 1000
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011


class Hub(Node):
    """Channels, presence, history and fan-out for a FastAPI app.

    ::

        hub = Hub(HubSettings(...), auth=JWTAuth(secret="..."))
        app = FastAPI(lifespan=hub.lifespan)
        app.include_router(hub.router())
    """

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
        """Register the publish hook; it decides client publications (and may replace data)."""
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

    def rpc(self, method: str) -> Callable[[OnRPC], OnRPC]:
        """Register an RPC handler: ``@hub.rpc("getUser") async def f(ctx, data): ...``."""

        def register(func: OnRPC) -> OnRPC:
            self.hooks.rpc[method] = func
            return func

        return register

    # -- the protocol endpoint --------------------------------------------------------

    def router(self, path: str = "/connection/websocket", *, uni_path: str | None = None) -> APIRouter:
        """An ``APIRouter`` with the Centrifuge-protocol WebSocket endpoint at ``path`` and,
        when ``uni_path`` is given (e.g. ``"/connection/uni_websocket"``), the unidirectional one."""
        router = APIRouter()
        router.add_api_websocket_route(path, self.websocket_endpoint)
        if uni_path is not None:
            router.add_api_websocket_route(uni_path, self.uni_websocket_endpoint)
        return router

    async def websocket_endpoint(self, websocket: WebSocket) -> None:
        """Serve one Centrifuge-protocol client on ``websocket`` (JSON encoding)."""
        offered = [p for p in websocket.scope.get("subprotocols", []) if p]
        await websocket.accept(JSON_SUBPROTOCOL if JSON_SUBPROTOCOL in offered else None)
        transport = WebSocketTransport(websocket)
        if PROTOBUF_SUBPROTOCOL in offered and JSON_SUBPROTOCOL not in offered:
            await transport.close(
                DisconnectCode.INAPPROPRIATE_PROTOCOL, "inappropriate protocol: only JSON is supported"
            )
            return
        await self._serve_protocol(websocket, transport, CentrifugeCodec())

    async def uni_websocket_endpoint(self, websocket: WebSocket) -> None:
        """Serve one unidirectional client: it sends a JSON connect request as its first
        message (or in the ``cf_connect`` query parameter) and then only receives pushes."""
        await websocket.accept()
        initial = websocket.query_params.get("cf_connect")
        await self._serve_protocol(
            websocket, WebSocketTransport(websocket), CentrifugeCodec(unidirectional=True), initial_connect=initial
        )

    async def _serve_protocol(
        self,
        websocket: WebSocket,
        transport: WebSocketTransport,
        codec: CentrifugeCodec,
        *,
        initial_connect: str | None = None,
    ) -> None:
        try:
            session = self.open_session(transport, codec, user=None)
        except Disconnect as exc:
            await transport.close(exc.code, exc.reason)
            return
        handler = ClientHandler(
            self,
            session,
            codec,
            headers=dict(websocket.headers),
            initial_connect=initial_connect,
        )
        await self.serve(session, handler.serve)

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
        """
        await websocket.accept(subprotocol)
        try:
            session = self.open_session(
                WebSocketTransport(websocket),
                RawCodec(ping=ping),
                user=user,
                conn_info=None if info is None else to_raw(info),
            )
        except Disconnect as exc:
            raise WebSocketException(exc.code, exc.reason) from None  # Starlette closes with the code
        if ping is not None:
            session.any_frame_is_pong = True
            session.start_pinging()
        if expire_at:
            session.start_task(_close_at(session, expire_at))
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


async def _close_at(session: Session, expire_at: int) -> None:
    await asyncio.sleep(max(0.0, expire_at - time.time()))
    session.close(DisconnectCode.EXPIRED)
