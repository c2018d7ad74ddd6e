"""Baseline server for ``fanout.py``: the FastAPI docs ``ConnectionManager`` pattern.

This is the broadcast loop from the FastAPI WebSockets tutorial, kept as close to the docs as
the benchmark allows: a list of accepted WebSockets and a ``broadcast`` that awaits
``send_text`` on each in turn. It is the "before" picture that fastapi-realtime is compared
against, so it deliberately keeps the tutorial's weaknesses (one slow client stalls everyone).

Routes, symmetric with ``realtime_app.py``:

* ``/ws`` — a subscriber; every broadcast text arrives as one WebSocket text frame.
* ``/publish`` — the publisher; each text frame it sends is broadcast to every subscriber.

Run by ``fanout.py`` as ``uvicorn baseline_app:app`` (with ``--app-dir bench``).
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect


class ConnectionManager:
    """The docs' manager: a list of sockets and a sequential broadcast."""

    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        """Accept ``websocket`` and add it to the broadcast list."""
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        """Drop ``websocket`` from the broadcast list."""
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        """Send ``message`` to every connection, one ``await`` after another."""
        for connection in self.active_connections:
            await connection.send_text(message)


app = FastAPI()
manager = ConnectionManager()


@app.websocket("/ws")
async def subscriber(websocket: WebSocket) -> None:
    """Hold a subscriber connection open until the client leaves."""
    await manager.connect(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        manager.disconnect(websocket)


@app.websocket("/publish")
async def publisher(websocket: WebSocket) -> None:
    """Broadcast every text frame the publisher sends, in order."""
    await websocket.accept()
    async for text in websocket.iter_text():  # ends quietly when the publisher leaves
        await manager.broadcast(text)
