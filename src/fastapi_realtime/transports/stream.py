"""The HTTP-streaming transport: a session writes its frames into one long HTTP response.

The unidirectional SSE and HTTP-streaming endpoints (see :mod:`fastapi_realtime.streaming`)
serve a session over a response body that never ends while the client listens. This adapter
speaks ASGI directly: :meth:`StreamTransport.send` writes one framed chunk (the ASGI server
waits when the client does not read, so the session's bounded queue fills and a reader that
stopped is closed with 3008 ``slow``), :meth:`StreamTransport.receive` only waits for the
client to go away (``http.disconnect``) and then raises :class:`TransportClosed`, and
:meth:`StreamTransport.close` ends the response body.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

import orjson
from starlette.types import Receive, Send

from ..session import Frame, TransportClosed

ABNORMAL_CLOSURE = 1006

NO_CACHE_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"cache-control", b"private, no-cache, no-store, must-revalidate, max-age=0"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each chunk on at once
)
"""Headers of every stream (as Centrifugo): no cache, and no buffering in a proxy."""


class StreamTransport:
    """Drives one streaming HTTP response for a :class:`~..session.Session`.

    ``encode`` turns a frame into the bytes of one chunk (an SSE event, a JSON line).
    Call :meth:`start` once, before the session sends anything.
    """

    def __init__(self, receive: Receive, send: Send, encode: Callable[[Frame], bytes]) -> None:
        self._receive = receive
        self._send = send
        self._encode = encode
        self._ended = False
        """The body was ended (or can no longer be): nothing more is written."""
        self._stuck = False
        """A write was interrupted while the client was not reading."""

    async def start(self, media_type: str, extra_headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Send the status line and headers (200, ``media_type``)."""
        headers = [(b"content-type", media_type.encode()), *NO_CACHE_HEADERS, *extra_headers]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})

    async def receive(self) -> Frame:
        """Wait until the client disconnects; a stream carries nothing from the client."""
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self._ended = True
                raise TransportClosed(ABNORMAL_CLOSURE)

    async def send(self, frame: Frame) -> None:
        if self._ended:
            raise TransportClosed(ABNORMAL_CLOSURE)
        try:
            await self._send({"type": "http.response.body", "body": self._encode(frame), "more_body": True})
        except asyncio.CancelledError:
            self._stuck = True  # the chunk may be half written: the body cannot be ended cleanly
            raise
        except OSError:
            self._ended = True
            raise TransportClosed(ABNORMAL_CLOSURE) from None

    async def close(self, code: int, reason: str) -> None:
        """End the response body (the code and reason went out as a ``disconnect`` push)."""
        if self._ended:
            return
        self._ended = True
        if not self._stuck:  # a client that stopped reading gets no clean end: the server drops it
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class EmulatedTransport(StreamTransport):
    """The stream of a bidirectional emulation session (centrifuge-js ``http_stream``/``sse``).

    Replies and pushes go out in the response body; the client's commands come in through
    separate ``/emulation`` requests, handed to :meth:`put` (on this hub, or routed here through
    the broker), and :meth:`receive` returns them in order. At most ``max_queued`` requests
    wait to be read: :meth:`put` refuses more. Run :meth:`watch_disconnect` in a task while the
    stream lives: once the client is gone, :meth:`receive` raises :class:`TransportClosed`.
    """

    def __init__(
        self, receive: Receive, send: Send, encode: Callable[[Frame], bytes], first: Frame, max_queued: int
    ) -> None:
        super().__init__(receive, send, encode)
        self._inbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._inbox.put_nowait(first)
        self._max_queued = max_queued
        self._gone = False

    def put(self, data: str) -> bool:
        """Queue the commands of one emulation request; False when ``max_queued`` wait already."""
        if self._gone:
            return True  # the stream ended: the client reconnects and sends them again
        if self._inbox.qsize() >= self._max_queued:
            return False
        self._inbox.put_nowait(data)
        return True

    async def watch_disconnect(self) -> None:
        """Wait for the client to go away, then make :meth:`receive` raise."""
        with contextlib.suppress(TransportClosed):
            await StreamTransport.receive(self)
        self._gone = True
        self._inbox.put_nowait(None)

    async def close(self, code: int, reason: str) -> None:
        """Send ``{"push":{"disconnect":...}}`` (a stream has no close code; the client needs
        it to know whether to reconnect), then end the body."""
        if not self._ended and not self._stuck:
            with contextlib.suppress(TransportClosed):
                push = {"push": {"disconnect": {"code": code, "reason": reason}}}
                await self.send(orjson.dumps(push).decode())
        await super().close(code, reason)

    async def receive(self) -> Frame:
        frame = await self._inbox.get()
        if frame is None:
            self._inbox.put_nowait(None)  # every later receive sees the end too
            raise TransportClosed(ABNORMAL_CLOSURE)
        return frame
