"""``RealtimeWebSocketProtocol``: uvicorn's WebSocket protocol of this project, end to end.

Real uvicorn servers on free ports, real clients (``websockets``, or a raw socket through its
sans-I/O layer for what a well-behaved client would not do). The ASGI conformance tests that
hold for any correct server also run against uvicorn's own ``websockets-sansio``; the rest pin
what this protocol adds: the direct channel (``write_now``/``send``/``receive``/``close``) and
its framing once per broadcast, 1006 for a vanished peer, the keepalive, the close timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from security.rawws import RawClient, raw_frame
from servers import RunningServer, running_config, running_server, running_server_logging_no_errors
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from wsclient import SansIOClient

from fastapi_realtime.serve import uvicorn_config
from fastapi_realtime.session import TransportClosed
from fastapi_realtime.transports import uvicorn_ws
from fastapi_realtime.transports.uvicorn_ws import EXTENSION, RealtimeWebSocketProtocol

WAIT = 10.0

PROTOCOLS = [
    pytest.param(RealtimeWebSocketProtocol, id="realtime"),
    pytest.param("websockets-sansio", id="uvicorn-sansio"),
]
"""The ASGI conformance tests run on this project's protocol and on uvicorn's own."""

Endpoint = Callable[[WebSocket], Awaitable[None]]


def ws_app(endpoint: Endpoint) -> Starlette:
    return Starlette(routes=[WebSocketRoute("/ws", endpoint)])


@contextlib.asynccontextmanager
async def serving(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture, ws: Any = RealtimeWebSocketProtocol, **config: Any
) -> AsyncIterator[RunningServer]:
    """Serve ``endpoint`` at ``/ws``; fails if the server logged anything at ERROR."""
    async with running_server_logging_no_errors(ws_app(endpoint), caplog, ws=ws, **config) as server:
        yield server


def direct(websocket: WebSocket) -> RealtimeWebSocketProtocol:
    channel = websocket.scope["extensions"][EXTENSION]
    assert isinstance(channel, RealtimeWebSocketProtocol)
    return channel


async def echo(websocket: WebSocket) -> None:
    """Echo text and binary; ``close CODE REASON`` makes the server close."""
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None and text.startswith("close "):
            _, code, reason = text.split(" ", 2)
            await websocket.close(int(code), reason)
            return
        if text is not None:
            await websocket.send_text(text)
        else:
            await websocket.send_bytes(message["bytes"])


def recording(events: asyncio.Queue[dict[str, Any]]) -> Endpoint:
    """An endpoint that accepts, then puts every ASGI event it receives in ``events``."""

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            message = await websocket.receive()
            await events.put(dict(message))
            if message["type"] == "websocket.disconnect":
                return

    return endpoint


async def next_event(events: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        return await events.get()


async def close_frame(client: SansIOClient) -> Close | None:
    """Read until the server's close frame (without answering pings); ``None`` if the
    connection ended without one."""
    async with asyncio.timeout(WAIT):
        while True:
            for event in await client._events():
                if isinstance(event, Frame) and event.opcode is Opcode.CLOSE:
                    return Close.parse(event.data)
            if client.protocol.state is State.CLOSED:
                return None


# -- ASGI conformance, on both protocols ----------------------------------------------


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_echo_text_binary_and_fragmented(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with serving(echo, caplog, ws=ws) as server, connect(f"{server.ws_url}/ws") as client:
        await client.send("héllo")
        assert await client.recv() == "héllo"
        await client.send(b"\x00\xff")
        assert await client.recv() == b"\x00\xff"
        await client.send(["frag", "mé", "nted"])
        assert await client.recv() == "fragménted"
        await client.send([b"\x01", b"\x02"])
        assert await client.recv() == b"\x01\x02"


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_subprotocol_and_headers_on_accept(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[list[str]] = []

    async def endpoint(websocket: WebSocket) -> None:
        seen.append(websocket.scope["subprotocols"])
        await websocket.accept(subprotocol="b", headers=[(b"x-extra", b"yes")])
        await websocket.close()

    async with serving(endpoint, caplog, ws=ws) as server:
        async with connect(f"{server.ws_url}/ws", subprotocols=["a", "b"]) as client:  # type: ignore[list-item]
            assert client.subprotocol == "b"
            assert client.response is not None
            assert client.response.headers["x-extra"] == "yes"
    assert seen == [["a", "b"]]


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_close_before_accept_is_403(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.close()

    async with serving(endpoint, caplog, ws=ws) as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.ws_url}/ws")
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_denial_response(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.send_denial_response(PlainTextResponse("not you", status_code=401, headers={"x-why": "t"}))

    async with serving(endpoint, caplog, ws=ws) as server:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.ws_url}/ws")
    response = refused.value.response
    assert (response.status_code, response.body, response.headers["x-why"]) == (401, b"not you", "t")


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_app_failing_before_accept_is_500(ws: Any) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        raise RuntimeError("the app failed before accepting")

    async with running_server(ws_app(endpoint), ws=ws) as server:  # uvicorn logs the exception
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{server.ws_url}/ws")
    assert refused.value.response.status_code == 500


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_server_close_code_and_reason(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with serving(echo, caplog, ws=ws) as server, connect(f"{server.ws_url}/ws") as client:
        await client.send("close 4001 bye now")
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "bye now")


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_client_close_code_and_reason(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with serving(recording(events), caplog, ws=ws) as server:
        async with connect(f"{server.ws_url}/ws") as client:
            await client.send("last")
            await client.close(4002, "client bye")
        assert await next_event(events) == {"type": "websocket.receive", "text": "last"}
        disconnect = await next_event(events)
    assert (disconnect["code"], disconnect.get("reason")) == (4002, "client bye")


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_empty_close_frame_is_1005(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with serving(recording(events), caplog, ws=ws) as server:
        client = await SansIOClient.handshake(server.port, "/ws")
        client.protocol.send_close()
        await client._flush()
        assert (await next_event(events))["code"] == 1005
        client.sock.close()


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_max_size_is_1009(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with serving(echo, caplog, ws=ws, ws_max_size=1000) as server:
        async with connect(f"{server.ws_url}/ws", max_size=None) as client:
            await client.send("x" * 1000)
            assert await client.recv() == "x" * 1000
            await client.send("x" * 1001)
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


@pytest.mark.parametrize("ws", PROTOCOLS)
async def test_server_shutdown_is_1012(ws: Any, caplog: pytest.LogCaptureFixture) -> None:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with serving(recording(events), caplog, ws=ws) as server, connect(f"{server.ws_url}/ws") as client:
        server.server.should_exit = True
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(WAIT):
                await client.recv()
        assert (await next_event(events))["code"] == 1012
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1012


# -- this protocol: errors, keepalive, close timeout ----------------------------------


async def test_abrupt_disconnect_is_1006(caplog: pytest.LogCaptureFixture) -> None:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with serving(recording(events), caplog) as server:
        client = await SansIOClient.handshake(server.port, "/ws")
        client.sock.close()
        assert (await next_event(events))["code"] == 1006


async def test_invalid_utf8_is_1007_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(echo, caplog) as server:
        client = await RawClient.open(server.port, "/ws")
        await client.write(raw_frame(Opcode.TEXT.value, b"ok \xff"))
        assert await client.close_code() == 1007
        # In a fragmented message, from the fragment with the invalid byte (not at its end).
        client = await RawClient.open(server.port, "/ws")
        await client.write(raw_frame(Opcode.TEXT.value, "é".encode()[:1] + b"(", fin=False))
        assert await client.close_code() == 1007
    assert "Traceback" not in caplog.text


async def test_protocol_error_is_1002_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(echo, caplog) as server:
        client = await RawClient.open(server.port, "/ws")
        await client.write(raw_frame(Opcode.TEXT.value, b"rsv1 without an extension", rsv=0x40))
        assert await client.close_code() == 1002
        client = await RawClient.open(server.port, "/ws")
        await client.write(raw_frame(Opcode.CONT.value, b"nothing to continue"))
        assert await client.close_code() == 1002
    assert "Traceback" not in caplog.text


async def test_keepalive_pings_answered_keep_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(echo, caplog, ws_ping_interval=0.05, ws_ping_timeout=1.0) as server:
        client = await SansIOClient.handshake(server.port, "/ws")
        pings = 0
        async with asyncio.timeout(WAIT):
            while pings < 3:
                for event in await client._events():
                    pings += isinstance(event, Frame) and event.opcode is Opcode.PING
                await client._flush()  # the pongs
        client.protocol.send_text(b"still here")
        await client._flush()
        async with asyncio.timeout(WAIT):
            while True:
                texts = [e.data for e in await client._events() if isinstance(e, Frame) and e.opcode is Opcode.TEXT]
                if texts:
                    break
                await client._flush()
        assert texts == [b"still here"]
        client.sock.close()


async def test_keepalive_timeout_is_1011(caplog: pytest.LogCaptureFixture) -> None:
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with serving(recording(events), caplog, ws_ping_interval=0.05, ws_ping_timeout=0.05) as server:
        client = await SansIOClient.handshake(server.port, "/ws")
        close = await close_frame(client)  # reads, never answers the ping
        assert close is not None
        assert (close.code, close.reason) == (1011, "keepalive ping timeout")
        assert (await next_event(events))["code"] == 1006
        client.sock.close()


async def test_close_timeout_drops_a_peer_that_does_not_answer(caplog: pytest.LogCaptureFixture) -> None:
    protocol = type("Quick", (RealtimeWebSocketProtocol,), {"close_timeout": 0.1})

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        channel = direct(websocket)
        await channel.receive()
        await channel.close(4003, "go")

    async with serving(endpoint, caplog, ws=protocol) as server:
        client = await SansIOClient.handshake(server.port, "/ws")
        client.protocol.send_text(b"close please")
        await client._flush()
        close = await close_frame(client)  # never answered
        assert close is not None
        assert close.code == 4003
        async with asyncio.timeout(WAIT):  # then the server drops the connection
            while client.protocol.state is not State.CLOSED:
                await client._events()
        client.sock.close()


async def test_app_ending_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        if websocket.query_params.get("fail"):
            raise RuntimeError("the app failed")

    async with running_server(ws_app(endpoint), ws=RealtimeWebSocketProtocol) as server:
        for query, code in (("", 1000), ("?fail=1", 1011)):
            async with connect(f"{server.ws_url}/ws{query}") as client:
                with pytest.raises(ConnectionClosed) as closed:
                    await client.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == code


# -- the direct channel ---------------------------------------------------------------


async def test_direct_channel_receive_send_close(caplog: pytest.LogCaptureFixture) -> None:
    seen: asyncio.Queue[Any] = asyncio.Queue()

    async def endpoint(websocket: WebSocket) -> None:
        channel = direct(websocket)
        with pytest.raises(RuntimeError):
            channel.write_now("too early")
        await websocket.accept()
        while True:
            try:
                frame = await channel.receive()
            except TransportClosed as exc:
                await seen.put(exc.code)
                with pytest.raises(TransportClosed):
                    channel.write_now("too late")
                with pytest.raises(TransportClosed):
                    await channel.send("too late")
                return
            await seen.put(frame)
            await channel.send(frame)

    async with serving(endpoint, caplog) as server:
        async with connect(f"{server.ws_url}/ws") as client:
            await client.send("text")
            assert await client.recv() == "text"
            await client.send(b"bytes")
            assert await client.recv() == b"bytes"
            await client.close(4005, "done")
        async with asyncio.timeout(WAIT):
            assert [await seen.get() for _ in range(3)] == ["text", b"bytes", 4005]
        client2 = await SansIOClient.handshake(server.port, "/ws")
        client2.sock.close()
        async with asyncio.timeout(WAIT):
            assert await seen.get() == 1006


async def test_a_reader_cancelled_leaves_the_other_waiting_one_reading(caplog: pytest.LogCaptureFixture) -> None:
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        channel = direct(websocket)
        first = asyncio.create_task(channel.receive())
        await asyncio.sleep(0)  # a yield, not a wait: ``first`` now waits for a message
        second = asyncio.create_task(channel.receive())
        await asyncio.sleep(0)  # ``second`` waits too, on the same wake-up
        first.cancel()
        await websocket.send_text("both waiting")
        got.set_result(await second)
        assert first.cancelled()

    async with serving(endpoint, caplog) as server, connect(f"{server.ws_url}/ws") as client:
        assert await client.recv() == "both waiting"
        await client.send("for the second")
        async with asyncio.timeout(WAIT):
            assert await got == "for the second"


async def test_direct_and_asgi_writes_keep_their_order(caplog: pytest.LogCaptureFixture) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        channel = direct(websocket)
        await websocket.send_text("1 asgi")
        assert channel.write_now("2 direct")
        await channel.send(b"3 direct")
        await websocket.send_bytes(b"4 asgi")
        assert channel.write_now("5 direct")
        await channel.close(1000, "")

    async with serving(endpoint, caplog) as server, connect(f"{server.ws_url}/ws") as client:
        received = [message async for message in client]
    assert received == ["1 asgi", "2 direct", b"3 direct", b"4 asgi", "5 direct"]


class HeldChannels:
    """An endpoint that accepts, hands the test its direct channel and stays open until
    :attr:`done` is set."""

    def __init__(self) -> None:
        self.channels: asyncio.Queue[RealtimeWebSocketProtocol] = asyncio.Queue()
        self.done = asyncio.Event()

    async def endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await self.channels.put(direct(websocket))
        await self.done.wait()

    async def take(self, count: int) -> list[RealtimeWebSocketProtocol]:
        """The direct channels of the next ``count`` connections."""
        async with asyncio.timeout(WAIT):
            return [await self.channels.get() for _ in range(count)]


async def test_write_now_frames_a_broadcast_once(caplog: pytest.LogCaptureFixture) -> None:
    held = HeldChannels()
    async with serving(held.endpoint, caplog, ws_per_message_deflate=False) as server:
        async with connect(f"{server.ws_url}/ws") as one, connect(f"{server.ws_url}/ws") as two:
            first, second = await held.take(2)
            frame = "".join(["one ", "broadcast"])  # a fresh object
            assert first.write_now(frame)
            wire = uvicorn_ws._last[1]
            assert second.write_now(frame)
            assert uvicorn_ws._last[0] is frame
            assert uvicorn_ws._last[1] is wire  # the same bytes object went to both
            assert await one.recv() == await two.recv() == "one broadcast"
            binary = bytes(range(200))
            assert first.write_now(binary)
            assert second.write_now(binary)
            assert await one.recv() == await two.recv() == binary
            held.done.set()


async def test_write_now_frames_each_of_a_few_frames_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round that gives every connection the same three frames, one after the other,
    frames each of them once (not once per connection, as a one-frame cache would)."""
    framed: list[object] = []
    wire = uvicorn_ws._wire

    def counting_wire(frame: str | bytes) -> bytes:
        framed.append(frame)
        return wire(frame)

    held = HeldChannels()
    async with serving(held.endpoint, caplog, ws_per_message_deflate=False) as server:
        async with connect(f"{server.ws_url}/ws") as one, connect(f"{server.ws_url}/ws") as two:
            channels = await held.take(2)
            frames = ["".join(["message ", str(i)]) for i in range(3)]  # fresh objects
            for i in range(uvicorn_ws.RECENT_FRAMES - 1):  # fills up while the three go in
                uvicorn_ws._framed(f"earlier {i}")
            monkeypatch.setattr(uvicorn_ws, "_wire", counting_wire)
            for channel in channels:
                for frame in frames:
                    assert channel.write_now(frame)
            for client in (one, two):
                assert [await client.recv() for _ in frames] == frames
            assert len(framed) == len(frames)
            held.done.set()


async def test_write_now_with_permessage_deflate(caplog: pytest.LogCaptureFixture) -> None:
    held = HeldChannels()
    async with serving(held.endpoint, caplog, ws_per_message_deflate=True) as server:
        async with connect(f"{server.ws_url}/ws") as plain, connect(f"{server.ws_url}/ws", compression=None) as raw:
            assert plain.protocol.extensions  # deflate was negotiated with this one
            assert not raw.protocol.extensions
            compressed, uncompressed = await held.take(2)
            frame = "compressible " * 100
            for _ in range(3):  # per connection, with its compression context
                assert compressed.write_now(frame)
                assert uncompressed.write_now(frame)
            for _ in range(3):
                assert await plain.recv() == frame
                assert await raw.recv() == frame
            held.done.set()


async def test_paused_writing_then_send_resumes_in_order(caplog: pytest.LogCaptureFixture) -> None:
    """A client that does not read: ``write_now`` returns False once the transport is paused,
    ``send`` waits until the client reads again; nothing is lost, the order is kept."""
    paused_at: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    chunk = 16 * 1024
    total = 400  # 6.4 MB: far past the kernel buffers and the transport's high-water mark

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        channel = direct(websocket)
        sent = 0
        while channel.write_now(f"{sent:06d}".encode() + b"." * (chunk - 6)):
            sent += 1
            assert sent < total, "the transport never paused"
        paused_at.set_result(sent)
        for n in range(sent, total):
            await channel.send(f"{n:06d}".encode() + b"." * (chunk - 6))
        await channel.close(1000, "")

    async with serving(endpoint, caplog) as server:
        client = await SansIOClient.handshake(server.port, "/ws", rcvbuf=4096)
        async with asyncio.timeout(WAIT):
            paused = await paused_at
        assert paused > 0
        numbers: list[int] = []
        async with asyncio.timeout(WAIT * 3):
            while client.protocol.state is not State.CLOSED:
                for event in await client._events():
                    if isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                        assert len(event.data) == chunk
                        numbers.append(int(event.data[:6]))
                await client._flush()
        client.sock.close()
    assert numbers == list(range(total))


async def test_asgi_send_waits_while_paused(caplog: pytest.LogCaptureFixture) -> None:
    """The same through ASGI: ``websocket.send`` waits while the transport is paused."""
    chunk = b"." * (64 * 1024)
    total = 200

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        for _ in range(total):
            await websocket.send_bytes(chunk)
        await websocket.close()

    async with serving(endpoint, caplog) as server:
        client = await SansIOClient.handshake(server.port, "/ws", rcvbuf=4096)
        received = 0
        async with asyncio.timeout(WAIT * 3):
            while client.protocol.state is not State.CLOSED:
                for event in await client._events():
                    received += isinstance(event, Frame) and event.opcode is Opcode.BINARY
                await client._flush()
        client.sock.close()
    assert received == total


# -- with fastapi_realtime.serve ------------------------------------------------------


@pytest.mark.parametrize("http", ["guarded-httptools", "h11"])
async def test_served_by_uvicorn_config(http: str, caplog: pytest.LogCaptureFixture) -> None:
    options: dict[str, Any] = {} if http == "guarded-httptools" else {"http": "h11"}
    config = uvicorn_config(ws_app(echo), log_level="warning", ws_ping_interval=None, **options)
    assert config.ws is RealtimeWebSocketProtocol
    async with running_config(config) as server:
        async with connect(f"{server.ws_url}/ws") as client:
            await client.send("through " + http)
            assert await client.recv() == "through " + http
        if http == "guarded-httptools":  # the slot was released when the server closed the connection
            assert getattr(config, "http").guard.count("127.0.0.1") == 0  # noqa: B009
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_ws_option_overrides_the_protocol() -> None:
    assert uvicorn_config(ws_app(echo), ws="websockets-sansio").ws == "websockets-sansio"


def test_frames_are_framed_right_from_many_threads() -> None:
    """The frame cache is shared by the event loops of all threads: framing from several
    threads at once, with the cache full and evicting, neither raises nor mixes frames up."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    errors: list[BaseException] = []

    def frame_many(worker: int) -> None:
        try:
            for i in range(20_000):
                frame = f"{worker}:{i}"
                assert uvicorn_ws._framed(frame) == uvicorn_ws._wire(frame)
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=frame_many, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
