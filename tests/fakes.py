"""In-memory stand-ins for a connection, so hub and session logic is tested without sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from fastapi_realtime.client import ClientHandler
from fastapi_realtime.protocol.codecs import CentrifugeCodec
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


class FakeDirectTransport(FakeTransport):
    """A :class:`FakeTransport` that also takes frames through ``write_now`` (as our uvicorn
    WebSocket protocol does); ``direct`` and ``awaited`` count the frames taken each way.
    ``broken`` makes the next write raise :class:`TransportClosed`."""

    def __init__(self) -> None:
        super().__init__()
        self.direct = 0
        self.awaited = 0
        self.broken = False

    def write_now(self, frame: Frame) -> bool:
        if self.broken:
            raise TransportClosed(1006)
        if not self._writable.is_set():
            return False
        self.direct += 1
        self.sent.append(frame)
        self.sent_event.set()
        return True

    async def send(self, frame: Frame) -> None:
        if self.broken:
            raise TransportClosed(1006)
        self.awaited += 1
        await super().send(frame)


class FakeProtocolClient:
    """A Centrifuge JSON client on a :class:`FakeTransport`, served in-process by a real
    ``ClientHandler`` (no sockets). Use as ``async with FakeProtocolClient(hub) as client``.

    ``clock``: the handler's monotonic clock (drives its command rate limit).
    """

    def __init__(self, hub: Any, *, clock: Callable[[], float] | None = None) -> None:
        self.hub = hub
        self.transport = FakeTransport()
        codec = CentrifugeCodec()
        self.session = hub.open_session(self.transport, codec, user=None)
        kwargs = {} if clock is None else {"clock": clock}
        self.handler = ClientHandler(hub, self.session, codec, **kwargs)
        self._runner: asyncio.Task[None] | None = None
        self._read = 0
        self._next_id = 1

    async def __aenter__(self) -> FakeProtocolClient:
        self._runner = asyncio.create_task(self.hub.serve(self.session, self.handler.serve))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.session.close()
        assert self._runner is not None
        await asyncio.wait_for(self._runner, 5)

    def send(self, *commands: dict[str, Any]) -> list[int]:
        """Feed ``commands`` in one frame, each with the next free id; return their ids."""
        ids = list(range(self._next_id, self._next_id + len(commands)))
        self._next_id += len(commands)
        self.transport.feed(
            "\n".join(orjson.dumps({"id": i, **c}).decode() for i, c in zip(ids, commands, strict=True))
        )
        return ids

    async def message(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next message the server sent (a reply or a push)."""
        messages = await self.transport.wait_sent(self._read + 1, timeout)
        self._read += 1
        msg: dict[str, Any] = orjson.loads(messages[self._read - 1])
        return msg

    async def command(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send one command; return its reply (skipping pushes before it)."""
        (cmd_id,) = self.send({method: body})
        while True:
            msg = await self.message()
            if msg.get("id") == cmd_id:
                return msg
