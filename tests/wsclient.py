"""A minimal Centrifuge-protocol client over the ``websockets`` package, for load-shaped tests."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri


class ProtocolClient:
    """Connects, subscribes, and yields pushes one by one (splitting batched frames)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._pending: deque[dict[str, Any]] = deque()
        self._next_id = 1

    @classmethod
    async def open(
        cls, url: str, channels: tuple[str, ...] = (), *, token: str = "", **connect_kwargs: Any
    ) -> ProtocolClient:
        ws = await connect(url, **connect_kwargs)
        client = cls(ws)
        commands = [{"id": 1, "connect": {"token": token} if token else {}}]
        commands += [{"id": i + 2, "subscribe": {"channel": ch}} for i, ch in enumerate(channels)]
        client._next_id = len(commands) + 1
        await ws.send("\n".join(orjson.dumps(c).decode() for c in commands))
        for expected in range(1, len(commands) + 1):
            reply = await client.next_message()
            if reply.get("id") != expected or "error" in reply:
                raise AssertionError(f"unexpected reply {reply}")
        return client

    async def next_message(self) -> dict[str, Any]:
        """The next message (reply or push), answering server pings on the way."""
        while not self._pending:
            frame = await self.ws.recv()
            for line in str(frame).split("\n"):
                msg = orjson.loads(line)
                if msg == {}:
                    await self.ws.send("{}")
                    continue
                self._pending.append(msg)
        return self._pending.popleft()

    async def next_push(self) -> dict[str, Any]:
        msg = await self.next_message()
        assert "push" in msg, msg
        push: dict[str, Any] = msg["push"]
        return push

    async def command(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        cmd_id = self._next_id
        self._next_id += 1
        await self.ws.send(orjson.dumps({"id": cmd_id, method: body}).decode())
        while True:
            msg = await self.next_message()
            if msg.get("id") == cmd_id:
                return msg

    async def close(self) -> None:
        await self.ws.close()


class StalledClient:
    """A client that subscribes, then never reads: a raw socket with a tiny receive window,
    speaking WebSocket through the sans-I/O ``websockets`` protocol."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock = sock
        self.protocol = protocol

    @classmethod
    async def open(cls, port: int, path: str, channels: tuple[str, ...]) -> StalledClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small TCP window
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
        client = cls(sock, protocol)
        protocol.send_request(protocol.connect())
        await client._flush()
        while protocol.state is not State.OPEN:  # the handshake response
            await client._events()
        commands = [{"id": 1, "connect": {}}] + [
            {"id": i + 2, "subscribe": {"channel": ch}} for i, ch in enumerate(channels)
        ]
        protocol.send_text("\n".join(orjson.dumps(c).decode() for c in commands).encode())
        await client._flush()
        replies = 0
        while replies < len(commands):  # read the replies, then stop reading for good
            for event in await client._events():
                if isinstance(event, Frame) and event.opcode == Opcode.TEXT:
                    replies += event.data.count(b"\n") + 1
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


async def gather_limited(coros: list[Any], limit: int) -> list[Any]:
    """Run coroutines with at most ``limit`` at once."""
    sem = asyncio.Semaphore(limit)

    async def run(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(run(c) for c in coros))
