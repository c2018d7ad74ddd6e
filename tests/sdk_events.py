"""Recording the events of centrifuge-python clients and subscriptions, for tests to wait on."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from centrifuge import ClientEventHandler, SubscriptionEventHandler

WAIT = 5.0
"""Default upper bound of :meth:`Events.next`, in seconds."""

SDK_CONNECT_CALLED = 0
"""centrifuge-python's ``on_connecting`` code for a connect started by ``client.connect()``."""


class Events(ClientEventHandler, SubscriptionEventHandler):
    """Records every SDK event of a client or a subscription.

    ``await events.next("publication")`` takes the next event of that kind (waiting at most
    ``WAIT`` seconds); ``events.log`` keeps all of them in order. When ``hold_reconnect`` is
    set, an ``on_connecting`` for a lost connection blocks until the event is set: the SDK
    schedules its reconnect only after the handler returns, so the test decides when the
    client comes back.
    """

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self._queues: defaultdict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self.hold_reconnect: asyncio.Event | None = None

    def _record(self, kind: str, ctx: Any) -> None:
        self.log.append((kind, ctx))
        self._queues[kind].put_nowait(ctx)

    async def next(self, kind: str, within: float = WAIT) -> Any:
        async with asyncio.timeout(within):
            return await self._queues[kind].get()

    def pending(self, kind: str) -> int:
        """Events of ``kind`` recorded and not yet taken with :meth:`next`."""
        return self._queues[kind].qsize()

    def of(self, kind: str) -> list[Any]:
        return [ctx for k, ctx in self.log if k == kind]

    async def on_connecting(self, ctx: Any) -> None:
        self._record("connecting", ctx)
        if self.hold_reconnect is not None and ctx.code != SDK_CONNECT_CALLED:
            async with asyncio.timeout(WAIT):
                await self.hold_reconnect.wait()

    async def on_connected(self, ctx: Any) -> None:
        self._record("connected", ctx)

    async def on_disconnected(self, ctx: Any) -> None:
        self._record("disconnected", ctx)

    async def on_error(self, ctx: Any) -> None:
        self._record("error", ctx)

    async def on_subscribing(self, ctx: Any) -> None:
        self._record("subscribing", ctx)

    async def on_subscribed(self, ctx: Any) -> None:
        self._record("subscribed", ctx)

    async def on_unsubscribed(self, ctx: Any) -> None:
        self._record("unsubscribed", ctx)

    async def on_publication(self, ctx: Any) -> None:
        self._record("publication", ctx)

    async def on_join(self, ctx: Any) -> None:
        self._record("join", ctx)

    async def on_leave(self, ctx: Any) -> None:
        self._record("leave", ctx)
