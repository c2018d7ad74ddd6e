"""The subscribe side of the Centrifuge protocol for one connection.

Client subscriptions (tokens, the ``on_subscribe`` hook, positioning and recovery),
server-side subscriptions (at connect and at run time) and subscription expiry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..hooks import SubscribeContext, SubscriptionGrant
from ..hub import Node, read_history
from ..protocol import encode
from ..protocol.codecs import CentrifugeCodec
from ..protocol.codes import ErrorCode, UnsubscribeCode
from ..protocol.commands import SubRefreshRequest, SubscribeRequest
from ..protocol.errors import ReplyError
from ..protocol.messages import Publication, StreamPosition, from_raw, to_raw
from ..session import Session

log = logging.getLogger("fastapi_realtime.client")

Result = dict[str, Any]


def ttl_until(expire_at: int) -> int:
    """Whole seconds until ``expire_at``; :class:`ReplyError` 109 when it has passed."""
    ttl = expire_at - int(time.time())
    if ttl <= 0:
        raise ReplyError(ErrorCode.TOKEN_EXPIRED)
    return ttl


def is_recovered(since: StreamPosition, top: StreamPosition, pubs: list[Publication], limit: int) -> bool:
    """Whether ``pubs`` are exactly what a client at ``since`` missed of a stream now at ``top``."""
    if since.epoch and since.epoch != top.epoch:
        return False
    if len(pubs) > limit:
        return False
    if not pubs:
        return top.offset == since.offset
    return pubs[0].offset == since.offset + 1 and pubs[-1].offset == top.offset


class Subscriptions:
    """Subscribes one session to channels on behalf of the protocol handler."""

    def __init__(
        self,
        hub: Node,
        session: Session,
        codec: CentrifugeCodec,
    ) -> None:
        self.hub = hub
        self.session = session
        self.codec = codec
        self.settings = hub.settings
        self.hooks = hub.hooks
        self.verifier = hub.auth
        self._expiry: dict[str, asyncio.TimerHandle] = {}
        self._connected = asyncio.Event()
        session.on_insufficient_state = self._insufficient_state
        session.on_server_subscribe = self._server_subscribe

    def close(self) -> None:
        """Cancel every subscription expiry timer."""
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()

    # -- client subscriptions ---------------------------------------------------------

    async def subscribe(self, cmd_id: int, req: SubscribeRequest) -> None:
        """The ``subscribe`` command: check permission, subscribe, queue the reply."""
        channel = self.hub.channel(req.channel)
        grant = None
        if req.token:
            if self.verifier is None:
                raise ReplyError(ErrorCode.PERMISSION_DENIED, "subscription tokens are not configured")
            grant = self.verifier.subscription(req.token, req.channel, self.session.user)
        if self.hooks.on_subscribe is not None:
            ctx = SubscribeContext(
                client=self.session.id,
                user=self.session.user,
                channel=req.channel,
                data=from_raw(req.data),
                grant=grant,
            )
            grant = await self.hooks.on_subscribe(ctx) or grant
        if grant is None and (channel.private or not channel.options.allow_subscribe):
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
        if not channel.allows_user(self.session.user):
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
        result, after = await self.join(req, grant=grant or SubscriptionGrant())
        self.session.enqueue(encode.reply(cmd_id, "subscribe", result))
        self.session.finish_subscribe(req.channel, after)

    async def unsubscribe(self, channel: str) -> None:
        """The ``unsubscribe`` command."""
        self._cancel_expiry(channel)
        await self.hub.unsubscribe(self.session, channel)

    def refresh(self, req: SubRefreshRequest) -> Result:
        """The ``sub_refresh`` command: a new subscription token extends the subscription."""
        if req.channel not in self.session.subscriptions:
            raise ReplyError(ErrorCode.PERMISSION_DENIED, "not subscribed")
        if self.verifier is None:
            raise ReplyError(ErrorCode.PERMISSION_DENIED, "subscription tokens are not configured")
        grant = self.verifier.subscription(req.token, req.channel, self.session.user)
        result: Result = {}
        if grant.expire_at:
            ttl = ttl_until(grant.expire_at)
            result["expires"], result["ttl"] = True, ttl
            self._schedule_expiry(req.channel, ttl)
        else:
            self._cancel_expiry(req.channel)
        return result

    async def join(self, req: SubscribeRequest, *, grant: SubscriptionGrant) -> tuple[Result, int]:
        """Subscribe the session and build the subscribe result (recovering if asked).

        Returns the result and the offset up to which publications are in it; the caller
        queues the reply, then calls ``finish_subscribe`` with that offset.
        """
        options = self.hub.channel(req.channel).options
        positioned = options.history and (req.positioned or req.recoverable or req.recover)
        await self.hub.subscribe(
            self.session,
            req.channel,
            join_leave=req.join_leave,
            positioned=positioned,
            chan_info=None if grant.info is None else to_raw(grant.info),
        )
        try:
            result: Result = {}
            after = 0
            if positioned:
                result, after = await self._position(req, recoverable=options.allow_recovery)
            if grant.expire_at:
                ttl = ttl_until(grant.expire_at)
                result["expires"], result["ttl"] = True, ttl
                self._schedule_expiry(req.channel, ttl)
            if grant.data is not None:
                result["data"] = orjson.Fragment(to_raw(grant.data))
            return result, after
        except BaseException:
            self._cancel_expiry(req.channel)
            await self.hub.unsubscribe(self.session, req.channel, announce=False)
            raise

    async def _position(self, req: SubscribeRequest, *, recoverable: bool) -> tuple[Result, int]:
        since = StreamPosition(req.offset, req.epoch) if req.recover and recoverable else None
        history = await read_history(
            self.hub.broker, req.channel, since, None if since else 0, False, self.settings.history_empty_ttl
        )
        top = history.position
        result: Result = {"positioned": True, "epoch": top.epoch}
        if recoverable and (req.recoverable or req.recover):
            result["recoverable"] = True
        offset = top.offset
        if since is not None:
            result["was_recovering"] = True
            pubs = history.publications
            if is_recovered(since, top, pubs, self.settings.recovery_max_publications):
                result["recovered"] = True
                result["publications"] = [encode.publication_dict(p) for p in pubs]
                offset = since.offset  # the client reaches the top by reading the publications
        if offset:
            result["offset"] = offset
        sub = self.session.subscriptions[req.channel]
        sub.offset, sub.epoch = top.offset, top.epoch
        return result, top.offset

    # -- server-side subscriptions ----------------------------------------------------

    def server_side_request(self, channel: str, client: SubscribeRequest | None = None) -> SubscribeRequest:
        """A subscribe request for a server-side subscription: positioned and recoverable when
        the namespace keeps history, recovering from what the client sent in ``connect.subs``."""
        options = self.hub.channel(channel).options
        recoverable = options.history and options.allow_recovery
        return SubscribeRequest(
            channel=channel,
            recover=bool(client and client.recover and recoverable),
            epoch=client.epoch if client else "",
            offset=client.offset if client else 0,
            positioned=options.history,
            recoverable=recoverable,
            join_leave=options.join_leave,
        )

    async def join_server_side(
        self, channels: Iterable[str], requested: Mapping[str, SubscribeRequest]
    ) -> tuple[dict[str, Result], dict[str, int]]:
        """Join the server-side subscriptions of a connect; returns results and offsets per
        channel. A refused channel is logged and left out."""
        results: dict[str, Result] = {}
        positions: dict[str, int] = {}
        for channel in dict.fromkeys(channels):
            try:
                request = self.server_side_request(channel, requested.get(channel))
                results[channel], positions[channel] = await self.join(request, grant=SubscriptionGrant())
            except ReplyError as exc:
                log.warning("server-side subscription of %s to %s refused: %s", self.session.id, channel, exc)
        return results, positions

    def accept_server_subscriptions(self) -> None:
        """The connect reply is queued: run-time server-side subscriptions may follow it."""
        self._connected.set()

    def _server_subscribe(self, channel: str) -> None:
        self.session.start_task(self._push_subscribe(channel), name=f"server-subscribe-{channel}")

    async def _push_subscribe(self, channel: str) -> None:
        await self._connected.wait()  # a subscribe push never precedes the connect reply
        results, positions = await self.join_server_side([channel], {})
        if channel in results:
            self.session.enqueue(self.codec.subscribe(channel, results[channel]))
            self.session.finish_subscribe(channel, positions[channel])

    # -- expiry and state -------------------------------------------------------------

    def _schedule_expiry(self, channel: str, ttl: int) -> None:
        self._cancel_expiry(channel)
        self._expiry[channel] = asyncio.get_running_loop().call_later(
            ttl + self.settings.expired_close_delay, self._expire, channel
        )

    def _cancel_expiry(self, channel: str) -> None:
        timer = self._expiry.pop(channel, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, channel: str) -> None:
        self._expiry.pop(channel, None)
        self.hub.server_unsubscribe(self.session, channel, UnsubscribeCode.EXPIRED)

    def _insufficient_state(self, channel: str) -> None:
        self.hub.server_unsubscribe(self.session, channel, UnsubscribeCode.INSUFFICIENT_STATE)
