"""Transports: thin adapters that carry a session's frames over a connection."""

from .websocket import WebSocketTransport

__all__ = ["WebSocketTransport"]
