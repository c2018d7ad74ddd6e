"""The WebSocket transport: a thin adapter from a Starlette ``WebSocket`` to a session."""

from __future__ import annotations

from starlette.websockets import WebSocket, WebSocketState

from ..session import Frame, TransportClosed


class WebSocketTransport:
    """Drives one accepted Starlette/FastAPI WebSocket for a :class:`~..session.Session`."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> Frame:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise TransportClosed(int(message.get("code") or 1006))
        text = message.get("text")
        if text is not None:
            return str(text)
        data = message.get("bytes")
        return bytes(data) if data is not None else b""

    async def send(self, frame: Frame) -> None:
        if isinstance(frame, str):
            await self.websocket.send({"type": "websocket.send", "text": frame})
        else:
            await self.websocket.send({"type": "websocket.send", "bytes": frame})

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            await self.websocket.close(code, reason.encode()[:123].decode(errors="ignore"))
