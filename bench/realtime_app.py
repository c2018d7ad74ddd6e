"""fastapi-realtime server for ``fanout.py``: our hub, with default settings, on FastAPI.

Routes, symmetric with ``baseline_app.py``:

* ``/connection/websocket`` — a subscriber, speaking the Centrifuge client protocol (JSON).
* ``/publish`` — the publisher; each text frame it sends is published to channel ``bench``
  with ``hub.publish``, passed as bytes (already-encoded JSON), so the hub does not re-parse it.

Run by ``fanout.py`` as ``uvicorn realtime_app:app`` (with ``--app-dir bench``).
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket

from fastapi_realtime import ChannelOptions, Hub, HubSettings

CHANNEL = "bench"

# Every load-generator connection comes from 127.0.0.1: lift the per-IP limits.
PER_IP = {"max_connections_per_ip": 100_000, "connect_rate_per_ip": 1e6, "connect_burst_per_ip": 100_000}
hub = Hub(HubSettings(allow_anonymous=True, namespaces={"": ChannelOptions()}, **PER_IP))  # type: ignore[arg-type]
app = FastAPI(lifespan=hub.lifespan)
app.include_router(hub.router())


@app.websocket("/publish")
async def publisher(websocket: WebSocket) -> None:
    """Publish every text frame the publisher sends, in order."""
    await websocket.accept()
    async for text in websocket.iter_text():  # ends quietly when the publisher leaves
        await hub.publish(CHANNEL, text.encode())
