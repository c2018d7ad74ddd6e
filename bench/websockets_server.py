"""Reference server for ``delivery.py``: the ``websockets`` library and its ``broadcast()``.

Same routes as ``baseline_app.py``: ``/ws`` subscribers, ``/publish`` a publisher whose every
text frame is sent to every subscriber with ``websockets.broadcast`` (one frame built, written
to each connection without awaiting). Runs on uvloop, as the uvicorn servers do.

Usage: ``python websockets_server.py <port>`` (127.0.0.1 only).
"""

from __future__ import annotations

import contextlib
import sys

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

subscribers: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    """A subscriber waits until it leaves; the publisher's frames are broadcast."""
    path = websocket.request.path if websocket.request else ""
    if path == "/ws":
        subscribers.add(websocket)
        try:
            await websocket.wait_closed()
        finally:
            subscribers.discard(websocket)
    elif path == "/publish":
        with contextlib.suppress(ConnectionClosed):  # the publisher leaving ends it quietly
            async for message in websocket:
                broadcast(subscribers, message)
    else:
        await websocket.close(1008)


async def main(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until interrupted."""
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main(int(sys.argv[1])))
