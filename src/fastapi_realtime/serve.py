"""Serve an app with uvicorn, configured for hostile networks.

:func:`run` (or :func:`uvicorn_config`, for those who drive ``uvicorn.Server`` themselves)
starts uvicorn with:

- ``ws_max_size`` = the hub's ``client_max_frame_bytes``: a larger frame is refused (1009) from
  its header, before it is read;
- permessage-deflate off: no compression bomb is ever inflated;
- the log redaction filter (:mod:`.logredact`): no token from a URL reaches a log line;
- a handshake timeout: a connection whose request line and headers are not complete within
  ``handshake_timeout`` seconds gets HTTP 408 and is closed (slowloris), for the first request
  and for each keep-alive request after it;
- a cap of ``server_connections_per_ip`` open TCP connections per client IP (WebSockets
  included): one more gets HTTP 503 and is closed before its request is read.

- the WebSocket protocol :class:`~.transports.uvicorn_ws.RealtimeWebSocketProtocol`
  (``uvicorn.Config(ws=...)``): it serves any ASGI WebSocket app, and gives the hub a direct
  channel that writes a broadcast frame to each subscriber without the ASGI send path.

The handshake timeout and the per-IP cap live in a subclass of uvicorn's httptools protocol
(``uvicorn.Config(http=...)``).
The cap counts TCP peers: behind a reverse proxy every client has the proxy's address, so
raise ``server_connections_per_ip`` to the total you accept and let the proxy cap per client.
Plain ``uvicorn app:app`` has none of them: see the README's "Serving it safely".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .app import Hub
from .logredact import install_log_redaction
from .settings import HubSettings
from .transports.uvicorn_ws import RealtimeWebSocketProtocol

log = logging.getLogger("fastapi_realtime.serve")

TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
BUSY_RESPONSE = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"


class ConnectionGuard:
    """The open connections of one server, per client IP, and the two limits on them."""

    def __init__(self, handshake_timeout: float, per_ip: int) -> None:
        self.handshake_timeout = handshake_timeout
        self.per_ip = per_ip
        self._open: dict[str, set[asyncio.BaseTransport]] = {}
        self._warned: set[str] = set()

    def admit(self, ip: str, transport: asyncio.BaseTransport) -> bool:
        """Count ``transport`` for ``ip``; ``False`` (and one warning per episode) when full.
        Connections without a client address (a Unix socket) are not capped."""
        if not ip:
            return True
        open_ = self._open.setdefault(ip, set())
        if len(open_) >= self.per_ip:
            if ip not in self._warned:
                self._warned.add(ip)
                log.warning("refusing connections from %s: %d open (server_connections_per_ip)", ip, len(open_))
            return False
        open_.add(transport)
        return True

    def release(self, ip: str, transport: asyncio.BaseTransport) -> None:
        """Forget ``transport`` (idempotent)."""
        open_ = self._open.get(ip)
        if open_ is None:
            return
        open_.discard(transport)
        if not open_:
            del self._open[ip]
            self._warned.discard(ip)

    def count(self, ip: str) -> int:
        return len(self._open.get(ip, ()))


class _ReleaseOnLost(asyncio.Protocol):
    """Stands in front of the WebSocket protocol after an upgrade, to release the connection's
    slot when it ends (the HTTP protocol is not told anything after the upgrade)."""

    def __init__(self, inner: asyncio.Protocol, release: Callable[[], None]) -> None:
        self.inner = inner
        self.release = release

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.release()


class GuardedHTTPProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a handshake timeout and a per-IP connection cap.

    The timer starts when the connection is made and again when a keep-alive request begins;
    it stops when that request's headers are complete (for a WebSocket, when the upgrade
    request is). :func:`uvicorn_config` makes a subclass with its own :class:`ConnectionGuard`.
    """

    guard: ClassVar[ConnectionGuard]
    _ip = ""
    _handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._ip = self.client[0] if self.client else ""
        if not self.guard.admit(self._ip, transport):
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.release(self._ip, self.transport)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        transport = self.transport
        super().handle_websocket_upgrade()
        ip, guard = self._ip, self.guard
        websocket = transport.get_protocol()
        assert isinstance(websocket, asyncio.Protocol)
        transport.set_protocol(_ReleaseOnLost(websocket, lambda: guard.release(ip, transport)))
        # This object is done; its parser holds its callbacks, so it would wait for the garbage
        # collector with its request scope and buffers (about 6 KB per connection).
        self.parser = None  # type: ignore[assignment]

    def _arm(self) -> None:
        if self._handshake_timer is None and not self.transport.is_closing():
            self._handshake_timer = self.loop.call_later(self.guard.handshake_timeout, self._handshake_expired)

    def _disarm(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if not self.transport.is_closing():
            self.transport.write(TIMEOUT_RESPONSE)
            self.transport.close()


def uvicorn_config(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    hub: Hub | None = None,
    settings: HubSettings | None = None,
    **uvicorn_options: Any,
) -> uvicorn.Config:
    """A ``uvicorn.Config`` for ``app`` with the safe settings of this module, from the limits
    of ``hub`` (or ``settings``; the defaults without either). ``uvicorn_options`` go to
    ``uvicorn.Config`` as they are and win over these (``http=`` drops the handshake timeout and
    the per-IP cap; ``ws=`` replaces :class:`RealtimeWebSocketProtocol`). Installs the log redaction filter."""
    limits = settings or (hub.settings if hub is not None else HubSettings())
    guard = ConnectionGuard(limits.handshake_timeout, limits.server_connections_per_ip)
    protocol = type("GuardedHTTPProtocol", (GuardedHTTPProtocol,), {"guard": guard})
    options: dict[str, Any] = {
        "ws_max_size": limits.client_max_frame_bytes,
        "ws_per_message_deflate": False,
        "http": protocol,
        "ws": RealtimeWebSocketProtocol,
    }
    options.update(uvicorn_options)
    config = uvicorn.Config(app, host=host, port=port, **options)
    install_log_redaction()
    return config


def run(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    hub: Hub | None = None,
    settings: HubSettings | None = None,
    **uvicorn_options: Any,
) -> None:
    """Serve ``app`` with uvicorn until it is stopped (SIGINT/SIGTERM), with :func:`uvicorn_config`.

    ::

        fastapi_realtime.run(app, host="0.0.0.0", port=8000, hub=hub)
    """
    uvicorn.Server(uvicorn_config(app, host=host, port=port, hub=hub, settings=settings, **uvicorn_options)).run()
