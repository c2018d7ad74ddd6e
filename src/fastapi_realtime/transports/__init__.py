"""Transports: thin adapters that carry a session's frames over a connection."""

from .uvicorn_ws import RealtimeWebSocketProtocol
from .websocket import WebSocketTransport, websocket_transport

__all__ = ["RealtimeWebSocketProtocol", "WebSocketTransport", "websocket_transport"]
