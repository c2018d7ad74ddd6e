"""The WebSocket transport: a thin adapter from a Starlette ``WebSocket`` to a session.

Whatever the peer or the server does, the session sees a frame or :class:`TransportClosed`:
a receive after the disconnect, and a send to a connection that is gone, raise it too.

:func:`websocket_transport` picks the transport of an accepted WebSocket: the direct channel
of :mod:`.uvicorn_ws` when the server offers it (uvicorn with ``RealtimeWebSocketProtocol``),
else this ASGI adapter (any other server or WebSocket protocol).
"""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..session import Frame, Transport, TransportClosed
from .uvicorn_ws import EXTENSION, RealtimeWebSocketProtocol

ABNORMAL_CLOSURE = 1006


class WebSocketTransport:
    """Drives one accepted Starlette/FastAPI WebSocket for a :class:`~..session.Session`."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self._peer_code = ABNORMAL_CLOSURE
        """The close code of the disconnect already received, for any later receive."""

    async def receive(self) -> Frame:
        if self.websocket.client_state != WebSocketState.CONNECTED:
            raise TransportClosed(self._peer_code)
        try:
            message = await self.websocket.receive()
        except RuntimeError:  # Starlette's WebSocketDisconnected (a state error) included
            raise TransportClosed(self._peer_code) from None
        if message["type"] == "websocket.disconnect":
            self._peer_code = int(message.get("code") or ABNORMAL_CLOSURE)
            raise TransportClosed(self._peer_code)
        text = message.get("text")
        if text is not None:
            return str(text)
        data = message.get("bytes")
        return bytes(data) if data is not None else b""

    async def send(self, frame: Frame) -> None:
        message = (
            {"type": "websocket.send", "text": frame}
            if isinstance(frame, str)
            else {"type": "websocket.send", "bytes": frame}
        )
        try:
            await self.websocket.send(message)
        except (OSError, RuntimeError, WebSocketDisconnect):
            raise TransportClosed(ABNORMAL_CLOSURE) from None

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):  # the peer is gone already
                await self.websocket.close(code, reason.encode()[:123].decode(errors="ignore"))


def websocket_transport(websocket: WebSocket) -> Transport:
    """The transport for ``websocket``, once accepted: the server's direct channel when the
    scope carries one (``scope["extensions"]["fastapi_realtime.websocket"]``), else a
    :class:`WebSocketTransport`."""
    direct = (websocket.scope.get("extensions") or {}).get(EXTENSION)
    if isinstance(direct, RealtimeWebSocketProtocol):
        return direct
    return WebSocketTransport(websocket)
