"""A WebSocket client on a raw socket, for frames no well-behaved library would send."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any

from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri


class RawClient:
    """A WebSocket client on a raw socket that can send frames no library would build."""

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self.sock, self.protocol = sock, protocol

    @classmethod
    async def open(cls, port: int, path: str, *, deflate: bool = False) -> RawClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        extensions = [ClientPerMessageDeflateFactory(client_max_window_bits=12)] if deflate else None
        protocol = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), extensions=extensions)
        client = cls(sock, protocol)
        protocol.send_request(protocol.connect())
        await client.write(b"".join(protocol.data_to_send()))
        while protocol.state is not State.OPEN:
            await client.events()
        return client

    @property
    def compression(self) -> bool:
        return bool(self.protocol.extensions)

    async def write(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError):  # the server closed while we were still sending
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def events(self) -> list[Any]:
        data = await asyncio.get_running_loop().sock_recv(self.sock, 65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        return list(self.protocol.events_received())

    async def next_text(self) -> str:
        """The next text message from the server (within 10 seconds)."""
        async with asyncio.timeout(10):
            while True:
                for event in await self.events():
                    if isinstance(event, Frame) and event.opcode == Opcode.TEXT:
                        return event.data.decode()

    async def close_code(self) -> int | None:
        """Read until the server's close frame (its code) or the end of the stream (``None``),
        for at most 10 seconds."""
        try:
            async with asyncio.timeout(10):
                return await self._close_code()
        finally:
            self.sock.close()

    async def _close_code(self) -> int | None:
        try:
            while self.protocol.state is not State.CLOSED:
                for event in await self.events():
                    if isinstance(event, Frame) and event.opcode == Opcode.CLOSE:
                        return Close.parse(event.data).code
            return None
        except ConnectionError:
            return None


def raw_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """One frame as given (an all-zero mask, so the payload goes as it is): any opcode, RSV bits
    (``0x40`` is RSV1, the "compressed" bit) or FIN."""
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if len(payload) < 126:
        length = bytes([mask_bit | len(payload)])
    elif len(payload) < 65536:
        length = bytes([mask_bit | 126]) + struct.pack("!H", len(payload))
    else:
        length = bytes([mask_bit | 127]) + struct.pack("!Q", len(payload))
    return bytes([first]) + length + (b"\0" * 4 if masked else b"") + payload


def text_frame(payload: bytes, *, compressed: bool = False) -> bytes:
    """One masked text frame, compressed (RSV1 set) or not."""
    return raw_frame(Opcode.TEXT.value, payload, rsv=0x40 if compressed else 0)
