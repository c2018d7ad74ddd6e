"""Frames no client should send, sent over a raw socket right after the handshake to the
tutorial-API echo and to the protocol endpoint of a uvicorn process: each ends in a close
frame with a code, and nothing is logged at ERROR or with a traceback (a fast subset of
``make autobahn``).

uvicorn's default WebSocket implementation logs its own ERROR, with a traceback, for a text
frame that is not valid UTF-8, before the app sees anything (``UVICORN_UTF8_ERROR``); that
record is uvicorn's and is the only one tolerated.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import struct

from subprocess_server import uvicorn_process

WAIT = 5.0
UVICORN_UTF8_ERROR = "Invalid UTF-8 sequence received from client."

TEXT, BINARY, CONTINUATION, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """One masked client frame (payloads under 126 bytes)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    assert len(payload) < 126
    length = bytes([0x80 | len(payload)])
    mask = os.urandom(4)
    return head + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


BAD = {
    "invalid_utf8_text": frame(TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
    "invalid_utf8_across_fragments": frame(TEXT, b"\xce", fin=False) + frame(CONTINUATION, b"\xff"),
    "reserved_opcode": frame(0x3, b"x"),
    "reserved_control_opcode": frame(0xB, b""),
    "rsv_bits_without_extension": frame(TEXT, b"x", rsv=0b010),
    "continuation_without_start": frame(CONTINUATION, b"x"),
    "new_message_inside_a_fragmented_one": frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
    "fragmented_ping": frame(PING, b"p", fin=False),
    "close_with_invalid_code": frame(CLOSE, struct.pack("!H", 999)),
    "close_with_one_byte_payload": frame(CLOSE, b"\x03"),
    "fragments_with_a_ping_between_then_garbage": frame(TEXT, b"he", fin=False)
    + frame(PING, b"")
    + frame(CONTINUATION, b"llo")
    + frame(0x4, b""),
}


async def send_raw(port: int, path: str, data: bytes) -> int | None:
    """Upgrade, send ``data``, read until the server hangs up; the server's close code."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    writer.write(data)
    received = b""
    try:
        while chunk := await reader.read(65536):
            received += chunk
            code = close_code(received)
            if code is not None:
                return code
        return None  # the server hung up without a close frame
    finally:
        writer.close()


def close_code(received: bytes) -> int | None:
    """The code of the server's close frame in ``received``, if it is there yet."""
    while len(received) >= 2:
        opcode, length = received[0] & 0x0F, received[1] & 0x7F
        start = 2
        if length == 126:
            length, start = struct.unpack("!H", received[2:4])[0], 4
        elif length == 127:
            length, start = struct.unpack("!Q", received[2:10])[0], 10
        if len(received) < start + length:
            return None
        if opcode == CLOSE:
            return struct.unpack("!H", received[start : start + 2])[0] if length >= 2 else 1005
        received = received[start + length :]
    return None


async def test_bad_frames_end_in_a_close_code_and_log_no_project_error() -> None:
    with uvicorn_process("lifecycle_app:app", "--log-level", "info") as server:
        for _ in range(2):
            for path in ["/echo", "/connection/websocket"]:
                for name, data in BAD.items():
                    async with asyncio.timeout(WAIT):
                        code = await send_raw(server.port, path, data)
                    assert code is not None and 1000 <= code < 5000, (path, name, code)
        server.process.send_signal(signal.SIGINT)
        await asyncio.to_thread(server.process.wait, WAIT)
        output = server.output()
    records = re.split(r"\n(?=[A-Z]+: )", output)
    errors = [r for r in records if r.startswith("ERROR") and UVICORN_UTF8_ERROR not in r.split("\n")[0]]
    assert errors == []
    tracebacks = [r for r in records if "Traceback" in r and UVICORN_UTF8_ERROR not in r.split("\n")[0]]
    assert tracebacks == []
