"""Raw Centrifuge-protocol clients over the ``websockets`` package, for end-to-end and load-shaped tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Self, TypeVar

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

T = TypeVar("T")


WAIT = 5.0
"""Default upper bound, in seconds, of each wait of a :meth:`ProtocolClient.connected` client."""

JSON = Subprotocol("centrifuge-json")


class ProtocolClient:
    """A Centrifuge JSON client over a raw WebSocket: sends any frame (a ``str``, ``bytes`` or a
    command as a ``dict``) and reads one message at a time (a frame may carry several, joined by
    newlines).

    ``answer_pings``: answer the server's pings (``{}``) on the way instead of returning them.
    ``timeout``: the upper bound of each :meth:`message` (``None``: no bound).
    """

    def __init__(self, ws: ClientConnection, *, answer_pings: bool = True, timeout: float | None = None) -> None:
        self.ws = ws
        self.answer_pings = answer_pings
        self.timeout = timeout
        self._pending: deque[dict[str, Any]] = deque()
        self._next_id = 1

    @classmethod
    async def open(
        cls, url: str, channels: tuple[str, ...] = (), *, token: str = "", **connect_kwargs: Any
    ) -> ProtocolClient:
        """Connect and subscribe to ``channels`` in one frame; answers pings, waits without bound."""
        ws = await connect(url, **connect_kwargs)
        client = cls(ws)
        commands = [{"id": 1, "connect": {"token": token} if token else {}}]
        commands += [{"id": i + 2, "subscribe": {"channel": ch}} for i, ch in enumerate(channels)]
        client._next_id = len(commands) + 1
        await ws.send("\n".join(orjson.dumps(c).decode() for c in commands))
        for expected in range(1, len(commands) + 1):
            reply = await client.message()
            if reply.get("id") != expected or "error" in reply:
                raise AssertionError(f"unexpected reply {reply}")
        return client

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(
        cls, url: str, *, answer_pings: bool = False, timeout: float | None = WAIT
    ) -> AsyncIterator[Self]:
        """A client on a ``centrifuge-json`` connection to ``url``, for the block (nothing sent yet).

        By default it returns the server's pings as messages, and bounds every wait by ``WAIT``.
        """
        async with connect(url, subprotocols=[JSON], open_timeout=timeout) as ws:
            yield cls(ws, answer_pings=answer_pings, timeout=timeout)

    async def send(self, frame: str | bytes | dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode() if isinstance(frame, dict) else frame)

    async def message(self) -> dict[str, Any]:
        """The next message from the server (reply or push)."""
        async with asyncio.timeout(self.timeout):
            while not self._pending:
                frame = await self.ws.recv()
                assert isinstance(frame, str), f"binary frame from the server: {frame!r}"
                for line in frame.split("\n"):
                    msg = orjson.loads(line)
                    if self.answer_pings and msg == {}:
                        await self.ws.send("{}")
                        continue
                    self._pending.append(msg)
        return self._pending.popleft()

    async def next_push(self) -> dict[str, Any]:
        msg = await self.message()
        assert "push" in msg, msg
        push: dict[str, Any] = msg["push"]
        return push

    async def request(self, frame: str | bytes | dict[str, Any]) -> dict[str, Any]:
        """Send ``frame``; return the next message, whatever it is."""
        await self.send(frame)
        return await self.message()

    async def command(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """Send a command with the next free id; return its reply (skipping other messages)."""
        cmd_id = self._next_id
        self._next_id += 1
        await self.send({"id": cmd_id, method: body})
        while True:
            msg = await self.message()
            if msg.get("id") == cmd_id:
                return msg

    async def closed(self) -> tuple[list[dict[str, Any]], int]:
        """Read until the server closes: the messages that came first, and the close code."""
        messages, frame = await read_until_closed(self.message)
        return messages, frame.code

    async def closed_with_reason(self) -> tuple[list[dict[str, Any]], int, str]:
        """Read until the server closes: the messages that came first, the close code and reason."""
        messages, frame = await read_until_closed(self.message)
        return messages, frame.code, frame.reason

    async def close(self) -> None:
        await self.ws.close()


async def read_until_closed(read: Callable[[], Awaitable[T]]) -> tuple[list[T], Close]:
    """Call ``read`` until the connection closes: what it returned before, and the server's close frame."""
    received: list[T] = []
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 - reading until the close is the point
        while True:
            received.append(await read())
    frame = closed.value.rcvd
    assert frame is not None, "closed without a close frame from the server"
    return received, frame


class SansIOClient:
    """A WebSocket client on a raw socket, through the sans-I/O ``websockets`` protocol: it reads
    only when told to, and can send bytes no well-behaved client would."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol

    @classmethod
    async def handshake(
        cls, port: int, path: str, *, extensions: list[Any] | None = None, rcvbuf: int | None = None
    ) -> Self:
        """Connect to 127.0.0.1:``port`` and complete the WebSocket handshake for ``path``."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: a small TCP window
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), extensions=extensions)
        client = cls(sock, protocol)
        protocol.send_request(protocol.connect())
        await client._flush()
        while protocol.state is not State.OPEN:  # the handshake response
            await client._events()
        return client

    async def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def _events(self) -> list[Any]:
        data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return list(self.protocol.events_received())

    async def read_close_code(self) -> int | None:
        """Read everything the server sent until the close frame; return its code."""
        try:
            while True:
                for event in await self._events():
                    if isinstance(event, Frame) and event.opcode == Opcode.CLOSE:
                        return Close.parse(event.data).code
                if self.protocol.state is State.CLOSED:
                    return None
        finally:
            self.sock.close()


class StalledClient(SansIOClient):
    """A client that subscribes, then never reads: a raw socket with a tiny receive window."""

    @classmethod
    async def open(cls, port: int, path: str, channels: tuple[str, ...]) -> StalledClient:
        client = await cls.handshake(port, path, rcvbuf=4096)
        commands = [{"id": 1, "connect": {}}] + [
            {"id": i + 2, "subscribe": {"channel": ch}} for i, ch in enumerate(channels)
        ]
        client.protocol.send_text("\n".join(orjson.dumps(c).decode() for c in commands).encode())
        await client._flush()
        replies = 0
        while replies < len(commands):  # read the replies, then stop reading for good
            for event in await client._events():
                if isinstance(event, Frame) and event.opcode == Opcode.TEXT:
                    replies += event.data.count(b"\n") + 1
        return client


async def gather_limited(coros: list[Any], limit: int) -> list[Any]:
    """Run coroutines with at most ``limit`` at once."""
    sem = asyncio.Semaphore(limit)

    async def run(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))
