"""The tutorial API, made safe: a hand-written ``@app.websocket`` endpoint on top of a hub.

Every step of the FastAPI WebSocket tutorial has a counterpart here, but sends are queued
(never awaited on the socket), rooms are hub channels, disconnects end the ``async with``
block quietly, and background tasks die with the connection::

    @app.websocket("/ws/{room}")
    async def chat(websocket: WebSocket, room: str):
        async with hub.connection(websocket) as conn:
            await conn.join(room)
            async for text in conn.iter_text():
                await hub.publish(room, text)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from .hub import Node
from .protocol.codes import DisconnectCode, ErrorCode
from .protocol.errors import ReplyError
from .protocol.messages import to_raw
from .session import Frame, Session, SessionClosed

UNSUPPORTED_DATA = 1003
"""Close code when a text frame was expected and a binary one came, or the reverse."""


class Connection:
    """One accepted WebSocket in a hand-written endpoint. Get it from ``hub.connection()``."""

    def __init__(self, hub: Node, session: Session, websocket: WebSocket) -> None:
        self.hub = hub
        self.session = session
        self.websocket = websocket

    @property
    def id(self) -> str:
        """The connection's client id (unique per connection)."""
        return self.session.id

    @property
    def user(self) -> str:
        return self.session.user

    @property
    def closed(self) -> bool:
        return self.session.closed

    @property
    def rooms(self) -> list[str]:
        """The rooms (channels) this connection is in."""
        return list(self.session.subscriptions)

    # -- receiving --------------------------------------------------------------------

    async def receive(self) -> Frame:
        """The next message, text or bytes. Raises ``WebSocketDisconnect`` once closed."""
        try:
            return await self.session.receive()
        except SessionClosed as exc:
            raise WebSocketDisconnect(exc.code, exc.reason) from None

    async def _receive_kind(self, kind: type[str] | type[bytes]) -> Any:
        frame = await self.receive()
        if not isinstance(frame, kind):
            self.session.close(UNSUPPORTED_DATA, f"expected {'text' if kind is str else 'binary'} frames")
            raise WebSocketDisconnect(UNSUPPORTED_DATA)
        return frame

    async def receive_text(self) -> str:
        """The next text message. A binary one closes the connection with 1003."""
        text: str = await self._receive_kind(str)
        return text

    async def receive_bytes(self) -> bytes:
        """The next binary message. A text one closes the connection with 1003."""
        data: bytes = await self._receive_kind(bytes)
        return data

    async def receive_json(self) -> Any:
        """The next message parsed as JSON. Invalid JSON closes the connection with 1003."""
        frame = await self.receive()
        try:
            return orjson.loads(frame)
        except orjson.JSONDecodeError:
            self.session.close(UNSUPPORTED_DATA, "invalid JSON")
            raise WebSocketDisconnect(UNSUPPORTED_DATA) from None

    async def iter_text(self) -> AsyncIterator[str]:
        """Text messages until the client goes away."""
        try:
            while True:
                yield await self.receive_text()
        except WebSocketDisconnect:
            return

    async def iter_json(self) -> AsyncIterator[Any]:
        """JSON messages until the client goes away."""
        try:
            while True:
                yield await self.receive_json()
        except WebSocketDisconnect:
            return

    # -- sending ----------------------------------------------------------------------

    def _enqueue(self, frame: Frame) -> None:
        if not self.session.enqueue(frame):
            raise WebSocketDisconnect(self.session.close_code or 1006, self.session.close_reason)

    async def send_text(self, text: str) -> None:
        """Queue a text message for this connection. Returns at once; never waits on the socket.

        Raises ``WebSocketDisconnect`` (with the close code) once the connection is closed;
        this and the other ``send_*`` methods also end the ``async with`` block quietly.
        """
        self._enqueue(text)

    async def send_bytes(self, data: bytes) -> None:
        """Queue a binary message for this connection."""
        self._enqueue(bytes(data))

    async def send_json(self, value: Any) -> None:
        """Queue ``value`` as a JSON text message."""
        self._enqueue(orjson.dumps(value).decode())

    # -- rooms ------------------------------------------------------------------------

    async def join(self, room: str) -> None:
        """Join ``room``: from now on every publication to it reaches this connection.

        Raises :class:`~.protocol.errors.ReplyError`: 107/102 for an invalid or unknown room
        name, 103 for a ``$private`` room or a ``#user`` room of other users (hand-written
        endpoints decide those themselves: use ``hub.subscribe`` after your own check).
        If the ``async with hub.connection()`` block lets it propagate, the connection is
        closed with 1008.
        """
        channel = self.hub.channel(room)
        if channel.private or not channel.allows_user(self.user):
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
        await self.hub.subscribe(self.session, room)
        self.session.finish_subscribe(room)

    async def leave(self, room: str) -> None:
        """Leave ``room`` (no-op if not in it)."""
        await self.hub.unsubscribe(self.session, room)

    # -- lifetime ---------------------------------------------------------------------

    def start_task(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> None:
        """Run ``coro`` while the connection lives; it is cancelled when the connection ends.

        If it raises, the connection is closed with 3004 and the error is logged.
        """
        self.session.start_task(coro, name=name)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection after the messages already queued are sent."""
        self.session.close(code, reason)

    def authenticate(self, user: str, info: Any = None, *, expire_at: int = 0) -> None:
        """Say who the client is once it proved it after accept (e.g. a token in its first
        message): ``user`` and public ``info`` as for ``hub.connection(user=, info=)``, and the
        Unix time after which the connection closes with 3005 (0: never)."""
        self.hub.set_user(self.session, user, None if info is None else to_raw(info))
        if expire_at:
            self.session.start_task(close_at(self.session, expire_at))


async def close_at(session: Session, expire_at: int) -> None:
    """Close ``session`` with 3005 ``expired`` at the Unix time ``expire_at``."""
    await asyncio.sleep(max(0.0, expire_at - time.time()))
    session.close(DisconnectCode.EXPIRED)
