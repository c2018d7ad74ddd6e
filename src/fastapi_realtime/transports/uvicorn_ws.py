"""A WebSocket protocol for uvicorn with a direct channel for the hub: ``uvicorn.Config(ws=...)``.

:class:`RealtimeWebSocketProtocol` serves any ASGI WebSocket app, as uvicorn's own protocols
do (the handshake, subprotocols and headers on accept, 403 on a close before accept, the
``websocket.http.response`` denial extension, keepalive pings, ``ws_max_size``, optional
permessage-deflate, 1012 on server shutdown), with websockets' sans-I/O ``ServerProtocol``
parsing and framing. What it adds is a direct channel: the ASGI scope of an accepted
connection carries the protocol object itself under ``scope["extensions"][EXTENSION]``, and it
implements the session's :class:`~..session.Transport` (``receive``, ``send``, ``close``) plus
:meth:`RealtimeWebSocketProtocol.write_now`, which writes one frame without a coroutine, an
ASGI message or a per-recipient framing: the frame's bytes are built once and the same bytes
object is written to every connection that is handed the same frame object (one broadcast).

Per connection it holds no task but the ASGI app's, no ``asyncio.Queue`` or ``Event``: incoming
messages wait in a list (reading from the socket is paused while any wait), and a future
exists only while someone waits for a message or for the write buffer to drain.

Both channels can be mixed on one connection (accept through Starlette, then write directly);
every write goes to the transport at once, so the order of writes is the order of calls.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import email.utils
import logging
import random
from collections.abc import MutableMapping
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame as WireFrame
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from ..session import Frame, TransportClosed

EXTENSION = "fastapi_realtime.websocket"
"""The key of the direct channel in ``scope["extensions"]``."""

Message = MutableMapping[str, Any]

_TEXT, _BINARY, _CONT, _PING, _PONG, _CLOSE = (
    Opcode.TEXT,
    Opcode.BINARY,
    Opcode.CONT,
    Opcode.PING,
    Opcode.PONG,
    Opcode.CLOSE,
)

# Connection phases, in order.
_REQUEST = 0  # waiting for the handshake request
_HANDSHAKE = 1  # the app runs and has not answered the handshake yet
_RESPONSE = 2  # the app is sending a denial response (websocket.http.response)
_OPEN = 3  # accepted
_CLOSING = 4  # a close frame was sent; waiting for the peer's (bounded by close_timeout)
_CLOSED = 5  # no more frames either way; the TCP connection is closing
_LOST = 6  # the TCP connection is gone

# Why the direct channel cannot write right now (bits of ``_out``; 0: it can).
_PAUSED = 1  # the transport's write buffer is over its high-water mark
_SHUT = 2  # closing or closed
_UNACCEPTED = 4  # the handshake is not complete
_DEFLATE = 8  # permessage-deflate: frames are compressed per connection

NO_STATUS = 1005
ABNORMAL_CLOSURE = 1006

_last: tuple[object, bytes] = (None, b"")
"""The last frame framed by :func:`_framed` and its wire bytes. One tuple, replaced as a whole:
a reader sees a matching pair from any thread."""

_recent: dict[int, tuple[object, bytes]] = {}
"""The last few frames framed, by ``id``, each with its wire bytes (the entry keeps the frame
alive, so an ``id`` is not reused while it is in here). Shared by the event loops of all threads:
each operation on it is atomic, and an eviction that loses a race to another thread is skipped."""

RECENT_FRAMES = 16
"""How many frames :data:`_recent` keeps: a round that gives every subscriber the same few
frames (several publications, one frame each) frames each of them once."""


def _wire(frame: Frame) -> bytes:
    """``frame`` as an unmasked, uncompressed WebSocket frame: text for ``str``, else binary."""
    if isinstance(frame, str):
        return WireFrame(_TEXT, frame.encode()).serialize(mask=False)
    return WireFrame(_BINARY, frame).serialize(mask=False)


def _framed(frame: Frame) -> bytes:
    """The wire bytes of ``frame``, framed once while it is among the last few written."""
    global _last
    entry = _recent.get(id(frame))
    if entry is None:
        if len(_recent) >= RECENT_FRAMES:
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # lost to another thread
                del _recent[next(iter(_recent))]  # the oldest
        entry = _recent[id(frame)] = (frame, _wire(frame))
    _last = entry
    return entry[1]


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class RealtimeWebSocketProtocol(asyncio.Protocol):
    """uvicorn WebSocket protocol (``uvicorn.Config(ws=RealtimeWebSocketProtocol)``) with a
    direct channel for the hub; see the module docstring.

    The direct channel is this object, found in the scope of the connection; it is usable once
    the connection is accepted (through ASGI, e.g. ``await websocket.accept()``)."""

    __slots__ = (
        "_app_state",
        "_client",
        "_close_code",
        "_close_reason",
        "_close_timer",
        "_config",
        "_conn",
        "_connect_read",
        "_decoder",
        "_detached",
        "_drainer",
        "_head",
        "_inbox",
        "_keepalive",
        "_loop",
        "_out",
        "_parts",
        "_phase",
        "_ping_payload",
        "_read_paused",
        "_reader",
        "_response",
        "_scope",
        "_server_state",
        "_transport",
    )

    close_timeout = 10.0
    """Seconds to wait for the peer's close frame after sending ours, before dropping the
    connection (uvicorn's own protocols wait 10 s too)."""

    logger = logging.getLogger("uvicorn.error")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self._config = config
        self._server_state = server_state
        self._app_state = app_state
        self._loop = _loop or asyncio.get_event_loop()
        self._transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self._client: tuple[str, int] | None = None
        extensions = None
        if config.ws_per_message_deflate:
            extensions = [
                ServerPerMessageDeflateFactory(
                    server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
                )
            ]
        self._conn = ServerProtocol(extensions=extensions, max_size=config.ws_max_size, logger=self.logger)
        self._scope: dict[str, Any] | None = None
        self._response: Response | None = None
        """The 101 response until the app accepts, or the denial response being sent."""
        self._phase = _REQUEST
        self._out = _UNACCEPTED
        self._connect_read = False
        self._inbox: list[Frame | None] = []
        """Messages not read yet, from ``_head`` on (a list: an empty deque weighs 760 bytes)."""
        self._head = 0
        self._read_paused = False
        self._reader: asyncio.Future[None] | None = None
        self._drainer: asyncio.Future[None] | None = None
        self._parts: list[Any] | None = None
        """The pieces of a fragmented message being received (``str`` for text)."""
        self._decoder: codecs.IncrementalDecoder | None = None
        self._close_code = 0
        """The code of the disconnect event (0 while the connection is open)."""
        self._close_reason = ""
        self._close_timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        """The next keepalive ping, or the deadline of the pong of the last one."""
        self._ping_payload: bytes | None = None
        self._detached = False
        """The connection outlives the ASGI call (see :meth:`detach`)."""

    @property
    def config(self) -> Config:
        """The server's configuration (as on uvicorn's own protocols: the hub reads its limits)."""
        return self._config

    # -- the direct channel (the session's Transport) ---------------------------------

    def write_now(self, frame: Frame) -> bool:
        """Write ``frame`` (``str``: a text frame, ``bytes``: binary) at once and return True;
        return False, writing nothing, while the transport is paused for writing (then
        ``await send(frame)``). Raises :class:`TransportClosed` (1006) once the connection is
        closing or closed, and ``RuntimeError`` before it is accepted.

        The wire bytes of the last few frame objects written are kept: writing the same
        objects to many connections (a broadcast) frames each of them once."""
        if self._out:
            return self._write_slowly(frame)
        last = _last
        self._transport.write(last[1] if last[0] is frame else _framed(frame))
        return True

    def detach(self, *, keepalive: bool = True) -> None:
        """Let the connection outlive the ASGI call: when the app returns, the connection
        stays open (it is not closed with 1000) until it is closed through this object or
        by the peer, and the scope is let go. For an owner that serves the connection from a
        task of its own (the hub's protocol endpoint does), so that no framework call stack is
        held per connection. Call it once the connection is accepted.

        ``keepalive=False`` stops the WebSocket-level pings (``ws_ping_interval``): for an
        owner that checks the peer's liveness itself (the Centrifuge protocol's pings)."""
        if self._phase < _OPEN:
            raise RuntimeError("the WebSocket is not accepted yet")
        self._detached = True
        if not keepalive:
            self._stop_keepalive()

    def _write_slowly(self, frame: Frame) -> bool:
        out = self._out
        if out & _SHUT:
            raise TransportClosed(ABNORMAL_CLOSURE)
        if out & _UNACCEPTED:
            raise RuntimeError("the WebSocket is not accepted yet")
        if out & _PAUSED:
            return False
        self._write(frame)
        return True

    def _write(self, frame: Frame) -> None:
        """Write ``frame`` now (the connection is open; the buffer may be over its mark)."""
        if self._out & _DEFLATE:
            conn = self._conn
            if isinstance(frame, str):
                conn.send_text(frame.encode())
            else:
                conn.send_binary(frame)
            self._flush()
            return
        last = _last
        self._transport.write(last[1] if last[0] is frame else _framed(frame))

    async def send(self, frame: Frame) -> None:
        """Write ``frame``, first waiting while the transport is paused for writing. Raises
        :class:`TransportClosed` (1006) once the connection is closing or closed."""
        while self._out & ~_DEFLATE:
            out = self._out
            if out & _SHUT:
                raise TransportClosed(ABNORMAL_CLOSURE)
            if out & _UNACCEPTED:
                raise RuntimeError("the WebSocket is not accepted yet")
            await self._wait_drained()
        self._write(frame)

    async def receive(self) -> Frame:
        """The next message from the peer. Raises :class:`TransportClosed` once the connection
        is closing: with the peer's close code (1005 when its close frame had none), the code
        of our own close frame if we closed first, 1006 when the connection broke."""
        while True:
            if self._head < len(self._inbox):
                return self._next_message()
            phase = self._phase
            if phase >= _CLOSING:
                raise TransportClosed(self._close_code)
            if phase < _OPEN:
                raise RuntimeError("the WebSocket is not accepted yet")
            await self._wait_readable()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake with ``code`` and ``reason`` (cut to 123 bytes); before
        the handshake is complete, refuse the connection with HTTP 403. Does nothing once the
        connection is closing."""
        self._send_close(code, reason)

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server_state.connections.add(self)  # type: ignore[arg-type]
        self._client = get_remote_addr(transport)
        self._trace("connection made")

    def connection_lost(self, exc: Exception | None) -> None:
        self._phase = _LOST
        self._out |= _SHUT
        if not self._close_code:
            self._close_code = ABNORMAL_CLOSURE
        self._stop_keepalive()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._server_state.connections.discard(self)
        self._wake_reader()
        self._wake_drainer()
        self._trace("connection lost")

    def eof_received(self) -> None:
        """The peer half-closed: let the transport close (the connection is lost)."""

    def pause_writing(self) -> None:
        self._out |= _PAUSED

    def resume_writing(self) -> None:
        self._out &= ~_PAUSED
        self._wake_drainer()

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        conn.receive_data(data)
        if self._phase == _REQUEST and conn.handshake_exc is not None:
            self._bad_request()
            return
        received = False
        for event in conn.events_received():
            if type(event) is not WireFrame:
                assert isinstance(event, Request)
                self._handshake(event)
                continue
            opcode = event.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                received = self._on_data(event) or received
            elif opcode is _PONG:
                self._on_pong(event)
            elif opcode is _CLOSE:
                self._on_close()
            # a ping: websockets queued the pong, written below
        self._flush()
        if conn.parser_exc is not None and self._phase < _CLOSED:
            self._on_protocol_error()
        if received:
            self._wake_reader()
            if not self._read_paused and not self._transport.is_closing():
                self._read_paused = True
                self._transport.pause_reading()

    # -- uvicorn ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """The server is exiting: close with 1012 (or refuse the handshake with 500)."""
        self._stop_keepalive()
        phase = self._phase
        if phase == _OPEN:
            self._closing(1012, "")
            self._conn.send_close(1012)
            self._flush()
            self._phase = _CLOSED
        elif phase == _HANDSHAKE:
            self._send_500()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._out & _PAUSED:  # the peer is not reading: waiting would keep the server up
            self._transport.abort()
        else:
            self._transport.close()

    def _trace(self, what: str) -> None:
        if self.logger.level <= TRACE_LOG_LEVEL:
            prefix = f"{self._client[0]}:{self._client[1]} - " if self._client else ""
            self.logger.log(TRACE_LOG_LEVEL, "%sWebSocket %s", prefix, what)

    # -- incoming frames --------------------------------------------------------------

    def _on_data(self, frame: WireFrame) -> bool:
        """Take a data frame; returns True when it completed a message."""
        if self._phase >= _CLOSING:
            return False  # after our close frame, the peer's messages are dropped
        opcode, data = frame.opcode, frame.data
        message: Frame
        if opcode is _CONT:
            parts = self._parts
            assert parts is not None  # websockets checks the sequence of frames
            if self._decoder is not None:
                try:
                    parts.append(self._decoder.decode(data, frame.fin))
                except UnicodeDecodeError:
                    self._fail(1007, "invalid UTF-8")
                    return False
            else:
                parts.append(data)
            if not frame.fin:
                return False
            message = "".join(parts) if self._decoder is not None else b"".join(parts)
            self._parts = self._decoder = None
        elif opcode is _TEXT:
            try:
                if frame.fin:
                    message = bytes(data).decode()
                else:
                    self._decoder = codecs.getincrementaldecoder("utf-8")()
                    self._parts = [self._decoder.decode(data)]
                    return False
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8")
                return False
        else:
            if not frame.fin:
                self._parts = [data]
                return False
            message = bytes(data)
        self._inbox.append(message)
        return True

    def _on_close(self) -> None:
        if self._phase == _CLOSING:  # the peer answered our close frame
            if self._close_timer is not None:
                self._close_timer.cancel()
                self._close_timer = None
        else:
            received = self._conn.close_rcvd
            assert received is not None
            self._closing(received.code, received.reason)
        self._phase = _CLOSED  # websockets queued the close frame's echo and the end of stream

    def _on_protocol_error(self) -> None:
        """websockets failed the connection (1002 protocol error, 1009 too big...): its close
        frame is written and the transport closing."""
        sent = self._conn.close_sent
        code = sent.code if sent is not None else ABNORMAL_CLOSURE
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("WebSocket closed with %d: %s", code, self._conn.parser_exc)
        self._closing(code, sent.reason if sent is not None else "")
        self._phase = _CLOSED
        self._transport.close()

    def _fail(self, code: int, reason: str) -> None:
        self._conn.fail(code, reason)
        self._closing(code, reason)
        self._phase = _CLOSED

    def _on_pong(self, frame: WireFrame) -> None:
        payload = self._ping_payload
        if payload is None or frame.data != payload:
            return
        self._ping_payload = None
        if self._config.ws_ping_timeout is not None:  # the pong came in time: next ping
            if self._keepalive is not None:
                self._keepalive.cancel()
            self._schedule_ping()

    # -- reading ----------------------------------------------------------------------

    def _next_message(self) -> Frame:
        inbox, head = self._inbox, self._head
        message = inbox[head]
        head += 1
        if head == len(inbox):
            inbox.clear()
            head = 0
            if self._read_paused:
                self._read_paused = False
                if not self._transport.is_closing():
                    self._transport.resume_reading()
        else:
            inbox[head - 1] = None
        self._head = head
        assert message is not None
        return message

    async def _wait_readable(self) -> None:
        fut = self._reader
        if fut is None or fut.done():
            fut = self._reader = self._loop.create_future()
            await fut
        else:
            await _wait_shared(fut)

    async def _wait_drained(self) -> None:
        fut = self._drainer
        if fut is None or fut.done():
            fut = self._drainer = self._loop.create_future()
            await fut
        else:
            await _wait_shared(fut)

    def _wake_reader(self) -> None:
        fut, self._reader = self._reader, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _wake_drainer(self) -> None:
        fut, self._drainer = self._drainer, None
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- writing ----------------------------------------------------------------------

    def _flush(self) -> None:
        """Write what websockets has to send; its end of stream closes the transport."""
        for data in self._conn.data_to_send():
            if data:
                self._transport.write(data)
            else:
                self._transport.close()

    def _closing(self, code: int, reason: str) -> None:
        """No more data frames: record the disconnect event, wake whoever waits."""
        if not self._close_code:
            self._close_code, self._close_reason = code, reason
        self._out |= _SHUT
        self._stop_keepalive()
        self._wake_reader()
        self._wake_drainer()

    def _send_close(self, code: int, reason: str) -> None:
        phase = self._phase
        if phase == _HANDSHAKE:
            self._refuse()
        elif phase == _OPEN and not self._transport.is_closing():
            reason = reason.encode()[:123].decode(errors="ignore")
            self._conn.send_close(code, reason)
            self._flush()
            self._closing(code, reason)
            self._phase = _CLOSING
            if self._read_paused:  # read on, for the peer's close frame
                self._read_paused = False
                self._transport.resume_reading()
            self._close_timer = self._loop.call_later(self.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        self._transport.abort()

    # -- keepalive --------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        interval = self._config.ws_ping_interval
        self._keepalive = self._loop.call_later(interval, self._ping) if interval else None

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None
        self._ping_payload = None

    def _ping(self) -> None:
        self._keepalive = None
        if self._phase != _OPEN or self._transport.is_closing():
            return
        self._ping_payload = random.getrandbits(32).to_bytes(4, "big")
        self._conn.send_ping(self._ping_payload)
        self._flush()
        timeout = self._config.ws_ping_timeout
        if timeout is not None:
            self._keepalive = self._loop.call_later(timeout, self._ping_timed_out)
        else:
            self._schedule_ping()

    def _ping_timed_out(self) -> None:
        self._keepalive = None
        if self._phase != _OPEN:
            return
        self._trace("keepalive ping timeout")
        self._conn.fail(1011, "keepalive ping timeout")
        self._closing(ABNORMAL_CLOSURE, "")
        self._phase = _CLOSED
        self._flush()

    # -- the handshake ----------------------------------------------------------------

    def _bad_request(self) -> None:
        """websockets could not parse the request: it queued a 414/431, or nothing (400)."""
        self._phase = _CLOSED
        self._closing(ABNORMAL_CLOSURE, "")
        output = b"".join(self._conn.data_to_send())
        if not output:
            output = self._conn.reject(400, "Failed to open a WebSocket connection: invalid request.\n").serialize()
        self._transport.write(output)
        self._transport.close()

    def _handshake(self, request: Request) -> None:
        conn = self._conn
        response = conn.accept(request)
        if response.status_code != 101:  # not a valid WebSocket handshake: websockets says why
            conn.send_response(response)
            self._closing(ABNORMAL_CLOSURE, "")
            self._phase = _CLOSED
            return
        self._response = response
        if conn.extensions:
            self._out |= _DEFLATE
        transport, config = self._transport, self._config
        raw_path, _, query_string = request.path.partition("?")
        subprotocols = [
            token.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol") for token in value.split(",")
        ]
        root_path = config.root_path
        self._scope = {
            "type": "websocket",
            "asgi": {"version": config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(transport) else "ws",
            "server": get_local_addr(transport),
            "client": self._client,
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query_string.encode("ascii"),
            "headers": [
                # websockets >= 17 decodes header values with latin-1, older ones with surrogateescape
                (name.lower().encode("ascii"), value.encode("latin-1", "surrogateescape"))
                for name, value in request.headers.raw_items()
            ],
            "subprotocols": subprotocols,
            "state": self._app_state.copy(),
            "extensions": {"websocket.http.response": {}, EXTENSION: self},
        }
        # websockets' parser keeps the request for the connection's lifetime; its headers are
        # in the scope now: free the copy (about 2 KB per connection).
        request.headers.clear()
        self._phase = _HANDSHAKE
        tasks = self._server_state.tasks
        task = self._loop.create_task(self._run_asgi())
        task.add_done_callback(tasks.discard)
        tasks.add(task)

    def _accept(self, message: Message) -> None:
        response = self._response
        assert response is not None
        self._log_outcome("[accepted]")
        headers = [
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in [*self._server_state.default_headers, *message.get("headers", [])]
        ]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.append(("Sec-WebSocket-Protocol", subprotocol))
        del response.headers["Date"]  # uvicorn's default headers carry the date
        response.headers.update(headers)
        self._response = None
        if self._transport.is_closing():  # the peer left during the handshake
            self._closing(ABNORMAL_CLOSURE, "")
            self._phase = _CLOSED
            return
        self._conn.send_response(response)
        self._flush()
        self._phase = _OPEN
        self._out &= ~_UNACCEPTED
        self._schedule_ping()

    def _log_outcome(self, outcome: str) -> None:
        """Log the handshake's outcome as uvicorn does."""
        scope: Any = self._scope
        self.logger.info('%s - "WebSocket %s" %s', get_client_addr(scope), get_path_with_query_string(scope), outcome)

    def _refuse(self) -> None:
        """A close before accept: HTTP 403."""
        self._log_outcome("403")
        self._response = None
        self._conn.send_response(self._conn.reject(HTTPStatus.FORBIDDEN, ""))
        self._closing(ABNORMAL_CLOSURE, "")
        self._phase = _CLOSED
        self._flush()

    def _start_response(self, message: Message) -> None:
        status = message["status"]
        if not 100 <= status < 600:
            raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
        self._log_outcome(str(status))
        headers = Headers(
            [(name.decode("latin-1"), value.decode("latin-1")) for name, value in message.get("headers", [])]
        )
        self._response = Response(status, _status_phrase(status), headers, b"")
        self._phase = _RESPONSE

    def _response_body(self, message: Message) -> None:
        response = self._response
        assert response is not None
        response.body = bytes(response.body) + bytes(message.get("body", b""))
        if message.get("more_body", False):
            return
        headers = response.headers
        headers.setdefault("Date", email.utils.formatdate(usegmt=True))
        headers.setdefault("Connection", "close")
        headers.setdefault("Content-Length", str(len(response.body)))
        headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        self._response = None
        self._conn.send_response(response)
        self._closing(ABNORMAL_CLOSURE, "")
        self._phase = _CLOSED
        self._flush()

    def _send_500(self) -> None:
        if self._transport.is_closing():
            return
        self._response = None
        self._conn.send_response(self._conn.reject(500, "Internal Server Error"))
        self._closing(ABNORMAL_CLOSURE, "")
        self._phase = _CLOSED
        self._flush()

    # -- ASGI -------------------------------------------------------------------------

    async def _run_asgi(self) -> None:
        app = self._config.loaded_app
        code = 1000
        try:
            result = await app(self._scope, self._asgi_receive, self._asgi_send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            code = 1011
        else:
            if self._phase < _RESPONSE:
                self.logger.error("ASGI callable returned without completing handshake.")
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        self._scope = None  # it refers to this object: no cycle left for the garbage collector
        phase = self._phase
        if self._detached and code == 1000:
            self._scope = None
            return
        if phase == _HANDSHAKE:
            self._send_500()
        elif phase == _OPEN:  # the app is done with the connection: close it properly
            self._send_close(code, "")
        if self._phase != _CLOSING:
            self._transport.close()

    async def _asgi_receive(self) -> Message:
        if not self._connect_read:
            self._connect_read = True
            return {"type": "websocket.connect"}
        while True:
            if self._head < len(self._inbox):
                message = self._next_message()
                if isinstance(message, str):
                    return {"type": "websocket.receive", "text": message}
                return {"type": "websocket.receive", "bytes": message}
            if self._phase >= _CLOSING:
                return {"type": "websocket.disconnect", "code": self._close_code, "reason": self._close_reason}
            await self._wait_readable()

    async def _asgi_send(self, message: Message) -> None:
        kind = message["type"]
        phase = self._phase
        if phase == _LOST:
            raise ClientDisconnected()
        if phase == _OPEN and kind == "websocket.send":
            while self._out & _PAUSED and self._phase == _OPEN:
                await self._wait_drained()
            if self._phase != _OPEN:
                raise ClientDisconnected()
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is not None:
                try:
                    self._write(data)
                except InvalidState:
                    raise ClientDisconnected() from None
        elif phase == _HANDSHAKE:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._refuse()
            elif kind == "websocket.http.response.start":
                self._start_response(message)
            else:
                raise RuntimeError(
                    "Expected ASGI message 'websocket.accept', 'websocket.close' "
                    f"or 'websocket.http.response.start' but got '{kind}'."
                )
        elif phase == _RESPONSE:
            if kind != "websocket.http.response.body":
                raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got '{kind}'.")
            self._response_body(message)
        elif kind == "websocket.close":
            self._send_close(message.get("code") or 1000, message.get("reason") or "")
        elif phase == _OPEN:
            raise RuntimeError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'.")
        else:  # closing or closed: the connection is going away
            raise ClientDisconnected()


async def _wait_shared(fut: asyncio.Future[None]) -> None:
    """Wait for ``fut``, which another task awaits too, without being cancelled with it."""
    try:
        await asyncio.shield(fut)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if fut.cancelled() and task is not None and not task.cancelling():
            return  # the other waiter was cancelled, not this one: the caller looks again
        raise
