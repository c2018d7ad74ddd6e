"""fastapi-realtime server for ``fanout.py``: our hub, with default settings, on FastAPI.

Routes, symmetric with ``baseline_app.py``:

* ``/connection/websocket`` — a subscriber, speaking the Centrifuge client protocol (JSON).
* ``/ws`` — a subscriber written with the tutorial API (``hub.connection``), plain text frames.
* ``/publish`` — the publisher; each text frame it sends is published to channel ``bench``
  with ``hub.publish``, passed as bytes (already-encoded JSON), so the hub does not re-parse it.

Run by ``fanout.py`` as ``uvicorn realtime_app:app`` (with ``--app-dir bench``), and by
``delivery.py`` as ``python realtime_app.py PORT``: served the way the README tells users to,
with ``fastapi_realtime.run`` (our WebSocket protocol, uvloop, httptools). With
``REDIS_URL`` set (``redis_fanout.py`` does) the hub uses the Redis broker on that URL, so
several such processes share channel ``bench``.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, WebSocket

from fastapi_realtime import Broker, ChannelOptions, Hub, HubSettings, MemoryBroker

CHANNEL = "bench"

# Every load-generator connection comes from 127.0.0.1: lift the per-IP limits.
PER_IP = {
    "max_connections_per_ip": 100_000,
    "server_connections_per_ip": 100_000,
    "connect_rate_per_ip": 1e6,
    "connect_burst_per_ip": 100_000,
}


def _broker() -> Broker:
    url = os.environ.get("REDIS_URL")
    if not url:
        return MemoryBroker()
    from fastapi_realtime.brokers.redis import RedisBroker

    return RedisBroker(url)


hub = Hub(
    HubSettings(allow_anonymous=True, namespaces={"": ChannelOptions()}, **PER_IP),  # type: ignore[arg-type]
    broker=_broker(),
)
app = FastAPI(lifespan=hub.lifespan)
app.include_router(hub.router())


@app.websocket("/publish")
async def publisher(websocket: WebSocket) -> None:
    """Publish every text frame the publisher sends, in order."""
    await websocket.accept()
    async for text in websocket.iter_text():  # ends quietly when the publisher leaves
        await hub.publish(CHANNEL, text.encode())


@app.websocket("/ws")
async def tutorial_subscriber(websocket: WebSocket) -> None:
    """A subscriber written with the tutorial API: join the room, read until the client leaves;
    every publication arrives as one text frame holding its data."""
    async with hub.connection(websocket) as conn:
        await conn.join(CHANNEL)
        async for _ in conn.iter_text():
            pass


if __name__ == "__main__":
    import contextlib
    import sys

    import fastapi_realtime

    with contextlib.suppress(KeyboardInterrupt):  # delivery.py stops it with SIGINT
        fastapi_realtime.run(app, port=int(sys.argv[1]), hub=hub, loop="uvloop", log_level="warning", access_log=False)
