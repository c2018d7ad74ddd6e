"""A TCP proxy on 127.0.0.1 that breaks on command, for fault tests.

It forwards every connection it accepts to one target (a Redis server, say) and can:

- :meth:`FaultProxy.cut` every open connection (both sides reset at once, as when a network
  path dies or a middlebox drops its state);
- :meth:`FaultProxy.refuse` new connections (accepted and reset at once) until
  :meth:`FaultProxy.accept` again;
- :meth:`FaultProxy.stall` forwarding (bytes stop moving in both directions, connections stay
  open, as with a partition that drops packets) and :meth:`FaultProxy.resume` it, delivering
  what was held.

It runs in the test's event loop; the processes under test connect to :attr:`FaultProxy.port`.
With :meth:`FaultProxy.point_to` it also stands in for a load balancer: new connections go to
another server from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

CHUNK = 64 * 1024


class _Link:
    """One proxied connection: a client side, a target side and a pump in each direction."""

    def __init__(self, client: asyncio.StreamWriter, target: asyncio.StreamWriter) -> None:
        self.client = client
        self.target = target
        self.pumps: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for pump in self.pumps:
            pump.cancel()
        for writer in (self.client, self.target):
            writer.transport.abort()


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target_host:target_port``. Use as an async context manager."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refusing = False
        self._accepted = 0
        self._accepted_changed = asyncio.Condition()

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def open_connections(self) -> int:
        return len(self._links)

    @property
    def accepted(self) -> int:
        """Connections forwarded so far (refused ones not counted)."""
        return self._accepted

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def point_to(self, host: str, port: int) -> None:
        """Forward new connections to ``host:port`` from now on (open ones stay where they are)."""
        self.target_host, self.target_port = host, port

    # -- faults ---------------------------------------------------------------------------

    def cut(self) -> None:
        """Reset every open connection, both sides."""
        links, self._links = self._links, set()
        for link in links:
            link.abort()

    def refuse(self) -> None:
        """Reset every new connection as soon as it is accepted, until :meth:`accept`."""
        self._refusing = True

    def accept(self) -> None:
        """Forward new connections again."""
        self._refusing = False

    def stall(self) -> None:
        """Stop forwarding bytes, in both directions, on every connection (new ones too)."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, starting with what was held during the stall."""
        self._flowing.set()

    async def wait_accepted(self, count: int, timeout: float) -> None:
        """Wait until :attr:`accepted` reaches ``count`` (a client reconnected, say)."""
        async with asyncio.timeout(timeout), self._accepted_changed:
            await self._accepted_changed.wait_for(lambda: self._accepted >= count)

    # -- forwarding -----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            target_reader, target_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, target_writer)
        self._links.add(link)
        link.pumps = [
            asyncio.create_task(self._pump(reader, target_writer, link)),
            asyncio.create_task(self._pump(target_reader, writer, link)),
        ]
        async with self._accepted_changed:
            self._accepted += 1
            self._accepted_changed.notify_all()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: _Link) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                await self._flowing.wait()
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # One side ended: end the other, as a TCP path would.
            if link in self._links:
                self._links.discard(link)
                for pump in link.pumps:
                    if pump is not asyncio.current_task():
                        pump.cancel()
                for side in (link.client, link.target):
                    with contextlib.suppress(Exception):
                        side.close()
