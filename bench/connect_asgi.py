"""Connect + subscribe, in-process: what the app layer (FastAPI's dispatch and the hub) costs per
connection, with no server, no sockets and no client process in the measurement.

N Centrifuge clients are driven straight into ``realtime_app.app`` through ASGI: each sends
``connect``, waits for its reply, sends ``subscribe`` (channel ``bench``), waits for that reply,
and stays connected. It prints the process CPU per connection until all N are subscribed or,
with ``--memory`` (instead: tracemalloc slows everything), the Python bytes each connection
keeps and the objects the collector tracks per connection (the stand-in client's inbox queue and
closures included, ~1.3 KB). uvicorn, websockets' handshake and the kernel are not in it:
``delivery.py --phases none`` measures the whole server.

``--via endpoint`` calls ``hub.websocket_endpoint`` directly, so the difference to ``--via app``
is FastAPI/Starlette's share (middleware, routing, and the frames they keep per connection).
``--gc off`` disables the collector (its share: the difference to the default);
``--no-telemetry`` turns FastAPI's OpenTelemetry bridge off.

    python bench/connect_asgi.py --connections 5000 --gc off --memory
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from realtime_app import CHANNEL, app, hub
from starlette.websockets import WebSocket

HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    (b"sec-websocket-version", b"13"),
    (b"user-agent", b"bench"),
]
CONNECT = orjson.dumps({"id": 1, "connect": {}}).decode()
SUBSCRIBE = orjson.dumps({"id": 2, "subscribe": {"channel": CHANNEL}}).decode()

Dispatch = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def endpoint_only(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
    return hub.websocket_endpoint(WebSocket(scope, receive, send))


async def client(i: int, dispatch: Dispatch, subscribed: Callable[[], None]) -> None:
    """One connection: its scope, an inbox the app reads, and a send that answers replies."""
    scope = {
        "type": "websocket", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "scheme": "ws", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 10_000 + i % 50_000),
        "root_path": "", "path": "/connection/websocket", "raw_path": b"/connection/websocket",
        "query_string": b"", "headers": list(HEADERS), "subprotocols": [], "state": {}, "extensions": {},
    }  # fmt: skip
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    inbox.put_nowait({"type": "websocket.receive", "text": CONNECT})
    replies = 0

    async def send(message: Any) -> None:
        nonlocal replies
        if message["type"] == "websocket.send":
            replies += 1
            if replies == 1:
                inbox.put_nowait({"type": "websocket.receive", "text": SUBSCRIBE})
            elif replies == 2:
                subscribed()

    await dispatch(scope, inbox.get, send)


async def run(opts: argparse.Namespace) -> None:
    n = opts.connections
    dispatch: Dispatch = app if opts.via == "app" else endpoint_only
    if opts.no_telemetry:
        app._telemetry.update(tracing=False, metrics=False, logs=False)  # what FastAPI(telemetry=...) sets
    async with hub:
        done, count = asyncio.Event(), 0

        def subscribed() -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        gc.collect()
        if opts.gc == "off":
            gc.disable()
        if opts.memory:
            tracemalloc.start()
            before, objects = tracemalloc.take_snapshot(), len(gc.get_objects())
        started = time.process_time()
        tasks = [asyncio.ensure_future(client(i, dispatch, subscribed)) for i in range(n)]
        await asyncio.wait_for(done.wait(), opts.deadline)
        cpu = time.process_time() - started
        if not opts.memory:  # tracemalloc slows everything down: no CPU figure then
            print(f"{n} connections via {opts.via}, gc {opts.gc}: {1e6 * cpu / n:.1f} us of CPU per connection")
        else:
            gc.collect()
            kept = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
            print(f"{kept / n:.0f} Python bytes and {(len(gc.get_objects()) - objects) / n:.0f} objects per connection")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--via", choices=("app", "endpoint"), default="app")
    parser.add_argument("--gc", choices=("on", "off"), default="on")
    parser.add_argument("--memory", action="store_true", help="tracemalloc bytes and GC objects per connection")
    parser.add_argument("--no-telemetry", action="store_true", help="FastAPI's OpenTelemetry bridge off")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds all connections may take")
    opts = parser.parse_args()
    try:
        import uvloop

        uvloop.run(run(opts))
    except ImportError:
        asyncio.run(run(opts))


if __name__ == "__main__":
    main()
