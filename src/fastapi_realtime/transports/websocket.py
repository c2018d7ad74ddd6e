"""The WebSocket transport: a thin adapter from a Starlette ``WebSocket`` to a session.

Whatever the peer or the server does, the session sees a frame or :class:`TransportClosed`:
a receive after the disconnect, and a send to a connection that is gone, raise it too.
"""

from __future__ import annotations

import contextlib

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ..session import Frame, TransportClosed

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
