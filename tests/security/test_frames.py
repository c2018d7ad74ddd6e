"""Compression bombs and oversized frames are refused while being read, not after; neighbours
keep receiving. And the hub says once when plain uvicorn's limits are looser than its own.

Memory is measured with ``tracemalloc`` (server and client share this process; the attack's
bytes are built before the measured window), bytes read by counting what uvicorn's WebSocket
protocol was handed.
"""

from __future__ import annotations

import asyncio
import tracemalloc
import zlib

import pytest
from fastapi import FastAPI
from wsclient import ProtocolClient

from fastapi_realtime import ChannelOptions, Hub, HubSettings, uvicorn_config
from fastapi_realtime.transports.uvicorn_ws import RealtimeWebSocketProtocol
from security.conftest import ServerLog, quiet_config, serving
from security.rawws import RawClient, text_frame

TEN_MB = 10 * 1024 * 1024
FRAME_LIMIT = 64 * 1024


class CountingProtocol(RealtimeWebSocketProtocol):
    """The WebSocket protocol ``uvicorn_config`` serves with, counting the bytes it is handed."""

    bytes_read = 0

    def data_received(self, data: bytes) -> None:
        CountingProtocol.bytes_read += len(data)
        super().data_received(data)


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
