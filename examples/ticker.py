"""A background publisher owned by the app's lifespan, and a task owned by one connection.

- The lifespan starts the hub, then one task that publishes ``{"type": "tick", "seq": n,
  "time": t}`` to channel ``ticker`` every ``TICK_INTERVAL`` seconds (default 1.0). The task
  has an owner: the lifespan cancels and awaits it on shutdown, before the hub stops, and a
  done-callback logs it if it ever ends on its own (a publisher nobody watches that dies
  silently leaves every subscriber waiting forever).
- ``WS /ws`` joins ``ticker`` and starts, with ``conn.start_task``, a per-connection heartbeat
  that sends ``{"type": "heartbeat", "count": n}`` every ``HEARTBEAT_INTERVAL`` seconds
  (default 5.0). It is cancelled when the connection ends; if it raised, the connection would
  be closed (3004) and the error logged.

``create_app(tick_interval=..., heartbeat_interval=...)`` builds a fresh hub and app, so tests
can run the example fast::

    TICK_INTERVAL=0.5 python -m examples.ticker
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI, WebSocket

from fastapi_realtime import Connection, Hub

from ._serve import serve

CHANNEL = "ticker"

log = logging.getLogger(__name__)


def _interval(value: float | None, env: str, default: float) -> float:
    seconds = float(os.environ.get(env, default)) if value is None else value
    if seconds <= 0:
        raise ValueError(f"{env} must be > 0 seconds, got {seconds}")
    return seconds


async def tick_forever(hub: Hub, interval: float) -> None:
    """Publish a numbered tick to ``ticker`` every ``interval`` seconds, without drift."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for seq in itertools.count(1):
        await hub.publish(CHANNEL, {"type": "tick", "seq": seq, "time": time.time()})
        await asyncio.sleep(max(0.0, start + seq * interval - loop.time()))


async def heartbeat(conn: Connection, interval: float) -> None:
    """Send this connection its own numbered heartbeat every ``interval`` seconds."""
    for count in itertools.count(1):
        await asyncio.sleep(interval)
        await conn.send_json({"type": "heartbeat", "count": count})


def _log_end(task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("the ticker task failed; no more ticks will be published", exc_info=exc)
    else:
        log.error("the ticker task ended; no more ticks will be published")


def create_app(
    *, hub: Hub | None = None, tick_interval: float | None = None, heartbeat_interval: float | None = None
) -> FastAPI:
    """A ticker app on ``hub`` (a fresh one by default).

    Intervals are in seconds; ``None`` reads ``TICK_INTERVAL`` (default 1.0) and
    ``HEARTBEAT_INTERVAL`` (default 5.0) from the environment.
    """
    the_hub = hub if hub is not None else Hub()
    tick_every = _interval(tick_interval, "TICK_INTERVAL", 1.0)
    beat_every = _interval(heartbeat_interval, "HEARTBEAT_INTERVAL", 5.0)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with the_hub:
            ticker = asyncio.create_task(tick_forever(the_hub, tick_every), name="ticker")
            ticker.add_done_callback(_log_end)
            try:
                yield
            finally:
                ticker.cancel()
                await asyncio.wait([ticker])  # never raises: a failure was logged by _log_end

    app = FastAPI(title="fastapi-realtime ticker", lifespan=lifespan)
    app.state.hub = the_hub

    @app.websocket("/ws")
    async def ticks(websocket: WebSocket) -> None:
        """Ticks from the shared publisher, plus this connection's own heartbeats."""
        async with the_hub.connection(websocket) as conn:
            await conn.join(CHANNEL)
            conn.start_task(heartbeat(conn, beat_every), name=f"heartbeat-{conn.id}")
            async for _ in conn.iter_text():
                pass  # nothing to do with client messages; the loop ends when the client leaves

    return app


hub = Hub()
app = create_app(hub=hub)

if __name__ == "__main__":
    serve(app)
