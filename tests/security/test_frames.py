"""Compression bombs and oversized frames are refused while being read, not after; neighbours
keep receiving. And the hub says once when plain uvicorn's limits are looser than its own.

Memory is measured with ``tracemalloc`` (server and client share this process; the attack's
bytes are built before the measured window), bytes read by counting what uvicorn's WebSocket
protocol was handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import tracemalloc
import zlib
from typing import Any

import pytest
from fastapi import FastAPI
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.client import ClientProtocol
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri
from wsclient import ProtocolClient

from fastapi_realtime import ChannelOptions, Hub, HubSettings, uvicorn_config
from security.conftest import ServerLog, quiet_config, serving

TEN_MB = 10 * 1024 * 1024
FRAME_LIMIT = 64 * 1024


class CountingProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default WebSocket protocol, counting the bytes it is handed."""

    bytes_read = 0

    def data_received(self, data: bytes) -> None:
        CountingProtocol.bytes_read += len(data)
        super().data_received(data)


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

    async def close_code(self) -> int | None:
        """Read until the server's close frame (its code) or the end of the stream (``None``)."""
        try:
            while self.protocol.state is not State.CLOSED:
                for event in await self.events():
                    if isinstance(event, Frame) and event.opcode == Opcode.CLOSE:
                        return Close.parse(event.data).code
            return None
        except ConnectionError:
            return None
        finally:
            self.sock.close()


def text_frame(payload: bytes, *, compressed: bool = False) -> bytes:
    """One masked text frame (an all-zero mask, so the payload goes as it is)."""
    first = 0x80 | (0x40 if compressed else 0) | Opcode.TEXT.value
    return bytes([first, 0x80 | 127]) + struct.pack("!Q", len(payload)) + b"\0\0\0\0" + payload


def zero_bomb(size: int) -> bytes:
    """``size`` zero bytes, deflated for permessage-deflate (a 12-bit window, tail removed)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, -12)
    return (deflater.compress(b"\0" * size) + deflater.flush(zlib.Z_SYNC_FLUSH))[:-4]


def frames_app(hub: Hub) -> FastAPI:
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    return app


def frames_hub() -> Hub:
    return Hub(
        HubSettings(
            allow_anonymous=True, client_max_frame_bytes=FRAME_LIMIT, namespaces={"": ChannelOptions(history_size=0)}
        )
    )


async def attack_with_bystander(
    hub: Hub, port: int, ws_url: str, attack: bytes, *, deflate: bool
) -> tuple[int | None, int]:
    """Send ``attack`` as the first frame of a fresh connection while a bystander listens on a
    channel: the attacker's close code, and the peak of traced memory meanwhile (bytes)."""
    bystander = await ProtocolClient.open(ws_url + "/connection/websocket", ("news",))
    attacker = await RawClient.open(port, "/connection/websocket", deflate=deflate)
    assert attacker.compression is deflate
    tracemalloc.start()
    try:
        await hub.publish("news", {"n": 1})
        await attacker.write(attack)
        await hub.publish("news", {"n": 2})
        code = await asyncio.wait_for(attacker.close_code(), 10)
        await hub.publish("news", {"n": 3})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    received = [(await bystander.next_push())["pub"]["data"]["n"] for _ in range(3)]
    assert received == [1, 2, 3]
    await bystander.close()
    return code, peak


async def test_a_10_mb_frame_is_refused_from_its_header(server_log: ServerLog) -> None:
    hub = frames_hub()
    CountingProtocol.bytes_read = 0
    config = uvicorn_config(frames_app(hub), hub=hub, ws=CountingProtocol, log_level="info", ws_ping_interval=None)
    attack = text_frame(b"x" * TEN_MB)
    async with serving(config, server_log) as server:
        code, peak = await attack_with_bystander(hub, server.port, server.ws_url, attack, deflate=False)
    assert code == 1009
    assert CountingProtocol.bytes_read < TEN_MB / 4, CountingProtocol.bytes_read
    assert peak < TEN_MB / 4, peak


async def test_a_compressed_frame_is_refused_when_compression_is_off(server_log: ServerLog) -> None:
    hub = frames_hub()
    config = uvicorn_config(frames_app(hub), hub=hub, log_level="info", ws_ping_interval=None)
    async with serving(config, server_log) as server:
        code, peak = await attack_with_bystander(
            hub, server.port, server.ws_url, text_frame(zero_bomb(TEN_MB), compressed=True), deflate=False
        )
    assert code == 1002  # RSV1 set without a negotiated extension: protocol error, nothing inflated
    assert peak < TEN_MB / 4, peak


async def test_a_zero_bomb_is_inflated_only_up_to_the_frame_limit_when_compression_is_on(
    server_log: ServerLog,
) -> None:
    hub = frames_hub()
    config = uvicorn_config(
        frames_app(hub), hub=hub, ws_per_message_deflate=True, log_level="info", ws_ping_interval=None
    )
    async with serving(config, server_log) as server:
        code, peak = await attack_with_bystander(
            hub, server.port, server.ws_url, text_frame(zero_bomb(TEN_MB), compressed=True), deflate=True
        )
    assert code == 1009
    assert peak < TEN_MB / 4, peak


@pytest.mark.parametrize("safe", [False, True])
async def test_the_hub_warns_once_when_the_servers_limits_are_looser(server_log: ServerLog, safe: bool) -> None:
    hub = frames_hub()
    app = frames_app(hub)
    config = uvicorn_config(app, hub=hub, log_level="info", ws_ping_interval=None) if safe else quiet_config(app)
    async with serving(config, server_log) as server:
        for _ in range(3):
            client = await ProtocolClient.open(server.ws_url + "/connection/websocket")
            await client.close()
    warnings = server_log.matching("looser than the hub's")
    if safe:
        assert not warnings
    else:
        assert len(warnings) == 1
        assert "--ws-max-size 65536" in warnings[0] and "--ws-per-message-deflate false" in warnings[0]
