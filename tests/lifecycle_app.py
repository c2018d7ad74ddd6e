"""The app served by ``tests/subprocess_server.py`` in a real uvicorn process.

- ``/echo``: the tutorial API, echoing every message (text or binary) back;
- ``/connection/websocket``: the protocol endpoint; channel ``news`` (clients may publish);
- ``POST /burst?count=N&size=B``: publishes N messages of about B bytes to ``news``;
- a client publication with ``{"slow": true}`` is held ``SLOW_PUBLISH`` seconds by the
  ``on_publish`` hook, which first prints ``publish hook entered`` (so a test can send a
  signal while the publish is in flight).

``SHUTDOWN_TIMEOUT`` (seconds) sets the hub's ``shutdown_timeout``; ``MAX_FRAME_BYTES`` its
``client_max_frame_bytes`` (the Autobahn run echoes messages of up to 16 MiB);
``CONNECT_BURST_PER_IP`` its ``connect_burst_per_ip`` and ``connect_rate_per_ip`` (the Autobahn
client opens hundreds of connections a second from one IP).
"""

from __future__ import annotations

import asyncio
import os
import sys

from fastapi import FastAPI, WebSocket

from fastapi_realtime import ChannelOptions, Hub, HubSettings, PublishContext

SLOW_PUBLISH = 0.5

limits: dict[str, int] = {}
if "MAX_FRAME_BYTES" in os.environ:
    limits["client_max_frame_bytes"] = int(os.environ["MAX_FRAME_BYTES"])
    limits["client_queue_max_bytes"] = 2 * limits["client_max_frame_bytes"]
if "CONNECT_BURST_PER_IP" in os.environ:
    limits["connect_burst_per_ip"] = limits["connect_rate_per_ip"] = int(os.environ["CONNECT_BURST_PER_IP"])
hub = Hub(
    HubSettings(
        allow_anonymous=True,
        ping_interval=0,
        namespaces={"": ChannelOptions(allow_publish=True)},
        shutdown_timeout=float(os.environ.get("SHUTDOWN_TIMEOUT", "5")),
        **limits,  # type: ignore[arg-type]
    )
)
app = FastAPI(lifespan=hub.lifespan)
app.include_router(hub.router())


@hub.on_publish
async def on_publish(ctx: PublishContext) -> None:
    if isinstance(ctx.data, dict) and ctx.data.get("slow"):
        print("publish hook entered", flush=True)
        sys.stdout.flush()
        await asyncio.sleep(SLOW_PUBLISH)  # a slow hook (a database, say), not synchronisation


@app.post("/burst")
async def burst(count: int, size: int) -> dict[str, int]:
    for n in range(count):
        await hub.publish("news", {"n": n, "pad": "x" * size})
    return {"published": count}


@app.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    async with hub.connection(websocket) as conn:
        while True:
            frame = await conn.receive()
            if isinstance(frame, str):
                await conn.send_text(frame)
            else:
                await conn.send_bytes(frame)
