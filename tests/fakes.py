"""In-memory stand-ins for a connection, so hub and session logic is tested without sockets."""

from __future__ import annotations

import asyncio

from fastapi_realtime.session import Frame, TransportClosed


class FakeTransport:
    """Records what the session writes; frames to receive are fed with :meth:`feed`.

    ``blocked`` makes ``send`` wait (a client that stopped reading) until :meth:`unblock`.
    """

    def __init__(self) -> None:
        self.sent: list[Frame] = []
        self.closed_with: tuple[int, str] | None = None
        self.closed = asyncio.Event()
        self.sent_event = asyncio.Event()
        self._incoming: asyncio.Queue[Frame | None] = asyncio.Queue()
        self._writable = asyncio.Event()
        self._writable.set()

    def feed(self, frame: Frame) -> None:
        self._incoming.put_nowait(frame)

    def hang_up(self) -> None:
        """The peer goes away without a close frame."""
        self._incoming.put_nowait(None)

    def block(self) -> None:
        self._writable.clear()

    def unblock(self) -> None:
        self._writable.set()

    async def receive(self) -> Frame:
        frame = await self._incoming.get()
        if frame is None:
            raise TransportClosed(1006)
        return frame

    async def send(self, frame: Frame) -> None:
        await self._writable.wait()
        self.sent.append(frame)
        self.sent_event.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)
        self.closed.set()

    def messages(self) -> list[str]:
        """Every message sent, batches split on newlines."""
        out: list[str] = []
        for frame in self.sent:
            assert isinstance(frame, str)
            out.extend(frame.split("\n"))
        return out

    async def wait_sent(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until at least ``count`` messages were sent; return them."""
        async with asyncio.timeout(timeout):
            while len(self.messages()) < count:
                self.sent_event.clear()
                await self.sent_event.wait()
        return self.messages()
