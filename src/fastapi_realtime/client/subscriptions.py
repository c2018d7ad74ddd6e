"""The subscribe side of the Centrifuge protocol for one connection.

Client subscriptions (tokens, the ``on_subscribe`` hook, positioning and recovery),
server-side subscriptions (at connect and at run time) and subscription expiry.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..hooks import SubscribeContext, SubscriptionGrant
from ..hub import Node, stream_history
from ..permissions import Action, may, may_subscribe
from ..protocol import tags_filter
from ..protocol.codecs import ClientCodec
from ..protocol.codes import ErrorCode, UnsubscribeCode
from ..protocol.commands import SubRefreshRequest, SubscribeRequest
from ..protocol.errors import Disconnect, ReplyError
from ..protocol.messages import Publication, StreamPosition, from_raw, to_raw
from ..protocol.tags_filter import TagsFilter
from ..session import Session
from ..settings import ChannelOptions

log = logging.getLogger("fastapi_realtime.client")

Result = dict[str, Any]


def ttl_until(expire_at: int) -> int:
    """Whole seconds until ``expire_at``; :class:`ReplyError` 109 when it has passed."""
    ttl = expire_at - int(time.time())
    if ttl <= 0:
        raise ReplyError(ErrorCode.TOKEN_EXPIRED)
    return ttl


def is_recovered(
    since: StreamPosition, top: StreamPosition, pubs: list[Publication], limit: int, max_bytes: int
) -> bool:
    """Whether ``pubs`` are exactly what a client at ``since`` missed of a stream now at ``top``,
    and no more than ``limit`` publications of at most ``max_bytes`` of data in all."""
    if since.epoch and since.epoch != top.epoch:
        return False
    if len(pubs) > limit or sum(len(p.data) for p in pubs) > max_bytes:
        return False
    if not pubs:
        return top.offset == since.offset
    return pubs[0].offset == since.offset + 1 and pubs[-1].offset == top.offset


NEWER_TYPES = "map and shared poll subscriptions are not served"
"""The message of the 108 that answers a subscribe or sub_refresh with a ``type`` (see README)."""

REJECT_UNRECOVERED = 2
"""Subscribe flag: answer error 112 instead of ``recovered: false`` (centrifuge-python's and
centrifuge-js's ``getState`` set it)."""


def cache_recovered(
    client: StreamPosition, top: StreamPosition, latest: list[Publication]
) -> tuple[bool, list[Publication]]:
    """Recovery in ``cache`` mode: whether a client at ``client`` is recovered by ``latest``
    (the stream's newest publication, if still kept) and what it must be sent (as Centrifugo:
    the newest publication unless the client already holds it)."""
    same = client.offset > 0 and client.offset == top.offset and client.epoch == top.epoch
    if not latest:
        return same, []
    if latest[-1].offset != top.offset:
        return False, []
    return True, [] if same else latest[-1:]


class Subscriptions:
    """Subscribes one session to channels on behalf of the protocol handler."""

    __slots__ = (
        "_connected",
        "_connected_event",
        "_expiry",
        "codec",
        "hooks",
        "hub",
        "session",
        "settings",
        "verifier",
    )  # one per connection

    def __init__(
        self,
        hub: Node,
        session: Session,
        codec: ClientCodec,
    ) -> None:
        self.hub = hub
        self.session = session
        self.codec = codec
        self.settings = hub.settings
        self.hooks = hub.hooks
        self.verifier = hub.auth
        self._expiry: dict[str, asyncio.TimerHandle] | None = None
        """Subscription expiry timers by channel, made at the first one."""
        self._connected = False
        """The connect reply is queued (see :meth:`accept_server_subscriptions`)."""
        self._connected_event: asyncio.Event | None = None
        """Made only when a run-time server-side subscribe comes before the connect reply."""
        session.on_insufficient_state = self._insufficient_state
        session.on_server_subscribe = self._server_subscribe

    def close(self) -> None:
        """Cancel every subscription expiry timer."""
        expiry, self._expiry = self._expiry, None
        if expiry is not None:
            for timer in expiry.values():
                timer.cancel()

    # -- client subscriptions ---------------------------------------------------------

    async def subscribe(self, cmd_id: int, req: SubscribeRequest) -> None:
        """The ``subscribe`` command: check permission, subscribe, queue the reply."""
        if req.type:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, NEWER_TYPES)
        channel = self.hub.channel(req.channel)
        grant = None
        if req.token:
            if self.verifier is None:
                raise ReplyError(ErrorCode.PERMISSION_DENIED, "subscription tokens are not configured")
            try:
                grant = self.verifier.subscription(req.token, req.channel, self.session.user)
            except Disconnect:  # a bad subscription token fails this subscribe, not the connection
                raise ReplyError(ErrorCode.PERMISSION_DENIED, "invalid subscription token") from None
        if self.hooks.on_subscribe is not None:
            ctx = SubscribeContext(
                client=self.session.id,
                user=self.session.user,
                channel=req.channel,
                data=from_raw(req.data),
                grant=grant,
            )
            grant = await self.hooks.on_subscribe(ctx) or grant
        user, insecure = self.session.user, self.settings.insecure
        if not may_subscribe(channel, user, granted=grant is not None, insecure=insecure):
            raise ReplyError(ErrorCode.PERMISSION_DENIED)
        if req.join_leave and not may(Action.PRESENCE, channel, user, subscribed=True, insecure=insecure):
            req = dataclasses.replace(req, join_leave=False)  # join/leave events tell who is present
        result, after = await self.join(req, grant=grant or SubscriptionGrant())
        self.session.enqueue_reply(self.codec.reply(cmd_id, "subscribe", result))
        self.hub.finish_subscribe(self.session, req.channel, after)

    async def unsubscribe(self, channel: str) -> None:
        """The ``unsubscribe`` command."""
        self._cancel_expiry(channel)
        await self.hub.unsubscribe(self.session, channel)

    def refresh(self, req: SubRefreshRequest) -> Result:
        """The ``sub_refresh`` command: a new subscription token extends the subscription."""
        if req.type:
            raise ReplyError(ErrorCode.NOT_AVAILABLE, NEWER_TYPES)
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
        tf = self._tags_filter(req, options)
        delta = bool(req.delta) and req.delta in options.allowed_delta_types
        if delta and tf is not None:
            raise ReplyError(ErrorCode.BAD_REQUEST, "delta and tags filter cannot be used together")
        recoverable = options.allow_recovery and (req.recoverable or req.recover or options.force_recovery)
        asked = req.positioned or req.recoverable or req.recover
        positioned = options.history and (asked or options.force_positioning or options.force_recovery)
        await self.hub.subscribe(
            self.session,
            req.channel,
            join_leave=req.join_leave or options.force_push_join_leave,
            positioned=positioned,
            chan_info=None if grant.info is None else to_raw(grant.info),
            delta=delta,
        )
        self.session.subscriptions[req.channel].tags_filter = tf
        try:
            result: Result = {}
            after = 0
            if positioned:
                result, after = await self._position(req, recoverable=recoverable, delta=delta)
            if delta:
                result["delta"] = True
            if grant.expire_at:
                ttl = ttl_until(grant.expire_at)
                result["expires"], result["ttl"] = True, ttl
                self._schedule_expiry(req.channel, ttl)
            if grant.data is not None:
                result["data"] = self.codec.payload(to_raw(grant.data))
            return result, after
        except BaseException:
            self._cancel_expiry(req.channel)
            await self.hub.unsubscribe(self.session, req.channel, announce=False)
            raise

    def _tags_filter(self, req: SubscribeRequest, options: ChannelOptions) -> TagsFilter | None:
        if req.tf is None:
            return None
        if not options.allow_tags_filter:
            raise ReplyError(ErrorCode.BAD_REQUEST, "tags filter not allowed in this namespace")
        try:
            return tags_filter.parse(req.tf, max_nodes=self.settings.tags_filter_max_nodes)
        except tags_filter.InvalidFilter as exc:
            raise ReplyError(ErrorCode.BAD_REQUEST, f"invalid tags filter: {exc}") from None

    async def _position(self, req: SubscribeRequest, *, recoverable: bool, delta: bool) -> tuple[Result, int]:
        options = self.hub.channel(req.channel).options
        recovering = req.recover and recoverable
        cache = recovering and options.recovery_mode == "cache"
        since = StreamPosition(req.offset, req.epoch) if recovering and not cache else None
        history = await stream_history(
            self.hub.broker,
            req.channel,
            since,
            1 if cache else None if since else 0,
            cache,
            self.settings.history_empty_ttl,
        )
        top = history.position
        result: Result = {"positioned": True, "epoch": top.epoch}
        if recoverable:
            result["recoverable"] = True
        offset = top.offset
        sub = self.session.subscriptions[req.channel]
        if recovering:
            result["was_recovering"] = True
            client = StreamPosition(req.offset, req.epoch)
            settings = self.settings
            if cache:
                recovered, pubs = cache_recovered(client, top, history.publications)
            else:
                pubs = history.publications
                recovered = is_recovered(
                    client, top, pubs, settings.recovery_max_publications, settings.client_reply_max_bytes
                )
            if not recovered and req.flag & REJECT_UNRECOVERED:
                raise ReplyError(ErrorCode.UNRECOVERABLE_POSITION)
            if recovered:
                result["recovered"] = True
                if sub.tags_filter is not None:
                    pubs = [p for p in pubs if sub.tags_filter.matches(p.tags)]
                result["publications"] = [self.codec.publication_dict(p, delta=delta) for p in pubs]
                if delta and pubs:
                    sub.delta_prev = pubs[-1].data
                # The client reaches the top by reading the publications.
                offset = top.offset if cache else client.offset
        if offset:
            result["offset"] = offset
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
        self._connected = True
        if self._connected_event is not None:
            self._connected_event.set()

    def _server_subscribe(self, channel: str) -> None:
        self.session.start_task(self._push_subscribe(channel), name=f"server-subscribe-{channel}")

    async def _push_subscribe(self, channel: str) -> None:
        if not self._connected:  # a subscribe push never precedes the connect reply
            if self._connected_event is None:
                self._connected_event = asyncio.Event()
            await self._connected_event.wait()
        results, positions = await self.join_server_side([channel], {})
        if channel in results:
            self.session.enqueue_reply(self.codec.subscribe(channel, results[channel]))
            self.hub.finish_subscribe(self.session, channel, positions[channel])

    # -- expiry and state -------------------------------------------------------------

    def _schedule_expiry(self, channel: str, ttl: int) -> None:
        self._cancel_expiry(channel)
        if self._expiry is None:
            self._expiry = {}
        self._expiry[channel] = asyncio.get_running_loop().call_later(
            ttl + self.settings.expired_close_delay, self._expire, channel
        )

    def _cancel_expiry(self, channel: str) -> None:
        timer = self._expiry.pop(channel, None) if self._expiry is not None else None
        if timer is not None:
            timer.cancel()

    def _expire(self, channel: str) -> None:
        if self._expiry is not None:
            self._expiry.pop(channel, None)
        self.hub.server_unsubscribe(self.session, channel, UnsubscribeCode.EXPIRED)

    def _insufficient_state(self, channel: str) -> None:
        self.hub.server_unsubscribe(self.session, channel, UnsubscribeCode.INSUFFICIENT_STATE)
