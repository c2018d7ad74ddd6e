"""Echo: the FastAPI WebSocket tutorial's first endpoint, on ``hub.connection()``.

Every text the client sends comes straight back. Compared with the tutorial, the send is queued
(it never waits on a slow socket) and a client that goes away ends the loop quietly instead of
raising ``WebSocketDisconnect``::

    python -m examples.echo
    # then, e.g.: python -m websockets ws://127.0.0.1:8000/ws
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket

from fastapi_realtime import Hub

from ._serve import serve

hub = Hub()
app = FastAPI(title="fastapi-realtime echo", lifespan=hub.lifespan)


@app.websocket("/ws")
async def echo(websocket: WebSocket) -> None:
    """Send every text message back to its sender, unchanged."""
    async with hub.connection(websocket) as conn:
        async for text in conn.iter_text():
            await conn.send_text(text)


if __name__ == "__main__":
    serve(app)
