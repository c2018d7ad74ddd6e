"""A WebSocket client on a raw socket, for frames no well-behaved library would send."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from wsclient import SansIOClient


class RawClient(SansIOClient):
    """A raw-socket client whose :meth:`write` sends any bytes, e.g. a :func:`raw_frame`."""

    @classmethod
    async def open(cls, port: int, path: str, *, deflate: bool = False) -> RawClient:
        """Connect, offering permessage-deflate when ``deflate``."""
        extensions = [ClientPerMessageDeflateFactory(client_max_window_bits=12)] if deflate else None
        return await cls.handshake(port, path, extensions=extensions)

    @property
    def compression(self) -> bool:
        """Whether the server accepted permessage-deflate."""
        return bool(self.protocol.extensions)

    async def write(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError):  # the server closed while we were still sending
            await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def next_text(self) -> str:
        """The next text message from the server (within 10 seconds)."""
        async with asyncio.timeout(10):
            while True:
                for event in await self._events():
                    if isinstance(event, Frame) and event.opcode == Opcode.TEXT:
                        return event.data.decode()

    async def close_code(self) -> int | None:
        """The code of the server's close frame (``None``: the connection ended without one),
        within 10 seconds."""
        try:
            async with asyncio.timeout(10):
                return await self.read_close_code()
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
