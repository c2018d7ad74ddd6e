"""The Centrifuge client protocol on top of a session: one handler per connection.

:class:`ClientHandler` reads frames from its session, decodes them with
:mod:`.protocol.commands`, runs each command against the hub, and queues replies. Commands
of one connection run one at a time, in the order the client sent them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import orjson

from .. import connlog
from .._version import __version__
from ..brokers.base import BrokerError
from ..channels import Channel
from ..hooks import (
    ConnectContext,
    ConnectReply,
    Credentials,
    PublishContext,
    RefreshContext,
    RPCContext,
)
from ..hub import Node
from ..permissions import Action, may
from ..protocol import encode
from ..protocol.codecs import ClientCodec
from ..protocol.codes import DisconnectCode, ErrorCode
from ..protocol.commands import (
    ChannelRequest,
    Command,
    ConnectRequest,
    HistoryRequest,
    PublishRequest,
    RefreshRequest,
    RPCRequest,
    SendRequest,
    SubRefreshRequest,
    SubscribeRequest,
    decode_command,
)
from ..protocol.errors import Disconnect, ReplyError
from ..protocol.messages import from_raw, to_raw, validate_as
from ..ratelimit import RefusalWindow, TokenBucket
from ..session import Frame, Session
from .subscriptions import Result, Subscriptions, ttl_until

log = logging.getLogger("fastapi_realtime.client")

SERVER_VERSION = f"fastapi-realtime {__version__}"

UNI_CONNECT_ERRORS: dict[int, DisconnectCode] = {
    ErrorCode.TOKEN_EXPIRED: DisconnectCode.EXPIRED,
    ErrorCode.UNAUTHORIZED: DisconnectCode.INVALID_TOKEN,
    ErrorCode.PERMISSION_DENIED: DisconnectCode.PERMISSION_DENIED,
}
"""A unidirectional client cannot read an error reply: connect errors become close codes
(anything else: 3501)."""

ANONYMOUS = Credentials(user="")
"""The credentials of an anonymous connection (immutable: one for all)."""

NO_HEADERS: Mapping[str, str] = MappingProxyType({})
"""The headers of a handler made without any."""

REPLY_TOO_LARGE = "reply over client_reply_max_bytes: ask for less (e.g. a history limit)"


class ClientHandler:
    """Serves the Centrifuge protocol for one session.

    Bidirectional sessions (``CentrifugeCodec()``) send commands and get replies. A
    unidirectional session (``CentrifugeCodec(unidirectional=True)``) sends one connect request
    (its first message, or ``initial_connect`` taken from the URL) and then only listens:
    it gets a ``connect`` push, pushes for its server-side subscriptions, and a ``disconnect``
    push before the close frame. ``clock`` (monotonic seconds) drives the command rate limit.
    """

    __slots__ = (
        "_bucket",
        "_clock",
        "_deadline",
        "_initial_connect",
        "_refusals",
        "_server_refresh",
        "codec",
        "connected",
        "credentials",
        "emulation_session",
        "headers",
        "hooks",
        "hub",
        "session",
        "settings",
        "subscriptions",
        "transport_name",
        "unidirectional",
        "verifier",
    )  # one per connection

    def __init__(
        self,
        hub: Node,
        session: Session,
        codec: ClientCodec,
        *,
        transport_name: str = "websocket",
        headers: Mapping[str, str] | None = None,
        initial_connect: Frame | None = None,
        emulation_session: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        self.session = session
        self.codec = codec
        self.unidirectional = codec.unidirectional
        self._initial_connect = initial_connect
        self.emulation_session = emulation_session
        """For a bidirectional emulation stream: the session key its connect reply carries
        (with this hub's ``node``), for the client's ``/emulation`` requests."""
        self.settings = hub.settings
        self.hooks = hub.hooks
        self.verifier = hub.auth
        self.transport_name = transport_name
        self.headers: Mapping[str, str] = NO_HEADERS if headers is None else headers
        """The HTTP headers of the connection's request, as given (not copied): read only to
        build the ``on_connect`` hook's ``ConnectContext.headers``, and let go once connected."""
        self.connected = False
        self.credentials: Credentials | None = None
        self._clock = clock
        self._bucket = TokenBucket(self.settings.client_command_rate, self.settings.client_command_burst, clock)
        self._refusals: RefusalWindow | None = None
        """Made at the first refused command (most connections never have one)."""
        self._deadline: asyncio.TimerHandle | None = None
        """Closes a stale connection before connect, expires or refreshes it after."""
        self._server_refresh = False
        self.subscriptions = Subscriptions(hub, session, codec)
        session.on_server_refresh = self._refreshed_by_api

    # -- loop -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Handle frames until the session closes."""
        self._deadline = asyncio.get_running_loop().call_later(
            self.settings.client_stale_close_delay, self._close_if_stale
        )
        try:
            if self.unidirectional:
                await self._serve_unidirectional()
                return
            session = self.session
            while not session.closed:
                if not await self._handle_frame(await session.receive()):
                    return
        finally:
            self._cancel_timers()

    async def _handle_frame(self, frame: Frame) -> bool:
        """Run the commands of one client frame; False once the session is closed. (A method
        of its own so that the frame and its commands are not kept while the next is awaited.)"""
        try:
            commands = self.codec.decode(frame)
        except Disconnect as exc:
            self.session.close(exc.code, exc.reason)
            return False
        for command in commands:
            await self.handle(command)
            if self.session.closed:
                return False
        return True

    async def _serve_unidirectional(self) -> None:
        if not await self._connect_unidirectional():
            return
        while True:  # a listener has nothing more to say; whatever it sends is ignored
            await self.session.receive()

    async def _connect_unidirectional(self) -> bool:
        """Run the connect request of a unidirectional client; False when it was refused."""
        frame, self._initial_connect = self._initial_connect, None
        if frame is None:
            frame = await self.session.receive()
        try:
            body = orjson.loads(frame)
            if not isinstance(body, dict):
                raise ValueError("connect request must be an object")
            command = decode_command({"id": 1, "connect": body})
            if command.error is not None:
                raise command.error
            assert isinstance(command.request, ConnectRequest)
            await self._connect(0, command.request)
        except ReplyError as exc:
            self.session.close(UNI_CONNECT_ERRORS.get(exc.code, DisconnectCode.BAD_REQUEST), exc.message)
            return False
        except Disconnect as exc:
            self.session.close(exc.code, exc.reason)
            return False
        except ValueError:  # orjson.JSONDecodeError included
            self.session.close(DisconnectCode.BAD_REQUEST, "the first message must be a JSON connect request")
            return False
        return True

    def _close_if_stale(self) -> None:
        if not self.connected:
            self.session.close(DisconnectCode.STALE)

    def _cancel_timers(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self.subscriptions.close()

    async def handle(self, cmd: Command) -> None:
        """Run one command and queue its reply."""
        session = self.session
        if cmd.is_pong:
            if not session.pong():
                session.close(DisconnectCode.BAD_REQUEST, "unexpected pong")
            return
        if not self._bucket.take():
            if self._refusals is None:
                settings = self.settings
                self._refusals = RefusalWindow(
                    settings.client_command_refusals, settings.client_command_refusals_window, self._clock
                )
            if self._refusals.refuse():
                session.close(DisconnectCode.TOO_MANY_REQUESTS)
            elif cmd.id:
                session.enqueue(self.codec.error_reply(cmd.id, ReplyError(ErrorCode.TOO_MANY_REQUESTS)))
            return
        if (cmd.method == "connect") == self.connected:
            session.close(DisconnectCode.BAD_REQUEST, "connect first" if not self.connected else "already connected")
            return
        if cmd.error is not None:
            session.enqueue(self.codec.error_reply(cmd.id, cmd.error))
            return
        started = time.perf_counter()
        try:
            result = await self._dispatch(cmd)
        except ReplyError as exc:
            self.hub.observer.command(cmd.method, time.perf_counter() - started, exc.code)
            if cmd.method == "connect":
                connlog.refused(exc.code, exc.message, ip=self.hub.client_ip(session), client=session.id)
            session.enqueue(self.codec.error_reply(cmd.id, exc))
            return
        except Disconnect as exc:
            self.hub.observer.command(cmd.method, time.perf_counter() - started, exc.code)
            session.close(exc.code, exc.reason)
            return
        except BrokerError as exc:  # Redis is down, say: a temporary error the client may retry
            self.hub.observer.command(cmd.method, time.perf_counter() - started, ErrorCode.INTERNAL)
            log.warning("%s command of client %s failed: %s", cmd.method, session.id, exc)
            session.enqueue(self.codec.error_reply(cmd.id, ReplyError(ErrorCode.INTERNAL)))
            return
        except Exception:
            self.hub.observer.command(cmd.method, time.perf_counter() - started, ErrorCode.INTERNAL)
            log.exception("%s command of client %s failed", cmd.method, session.id)
            session.enqueue(self.codec.error_reply(cmd.id, ReplyError(ErrorCode.INTERNAL)))
            return
        self.hub.observer.command(cmd.method, time.perf_counter() - started, 0)
        if result is not None and cmd.id:
            frame = self.codec.reply(cmd.id, cmd.method, result)
            if len(frame) > self.settings.client_reply_max_bytes:
                frame = self.codec.error_reply(cmd.id, ReplyError(ErrorCode.LIMIT_EXCEEDED, REPLY_TOO_LARGE))
            session.enqueue_reply(frame)

    async def _dispatch(self, cmd: Command) -> Result | None:
        req = cmd.request
        if isinstance(req, ConnectRequest):
            await self._connect(cmd.id, req)
            return None
        if isinstance(req, SubscribeRequest):
            await self.subscriptions.subscribe(cmd.id, req)
            return None
        if isinstance(req, PublishRequest):
            return await self._publish(req)
        if isinstance(req, HistoryRequest):
            return await self._history(req)
        if isinstance(req, RPCRequest):
            return await self._rpc(req)
        if isinstance(req, SendRequest):
            if self.hooks.on_message is not None:
                await self.hooks.on_message(self._rpc_context(""), from_raw(req.data))
            return None
        if isinstance(req, RefreshRequest):
            return await self._refresh(req)
        if isinstance(req, SubRefreshRequest):
            return self.subscriptions.refresh(req)
        if isinstance(req, ChannelRequest):
            if cmd.method == "unsubscribe":
                await self.subscriptions.unsubscribe(req.channel)
                return {}
            return await self._presence(cmd.method, req)
        return {}  # the legacy ping command

    # -- connect and refresh ----------------------------------------------------------

    async def _connect(self, cmd_id: int, req: ConnectRequest) -> None:
        credentials = self._verify_connection(req.token) if req.token else None
        reply_data = None
        if self.hooks.on_connect is not None:
            ctx = ConnectContext(
                client=self.session.id,
                credentials=credentials,
                data=from_raw(req.data),
                name=req.name,
                version=req.version,
                headers={**self.headers, **req.headers},
                transport=self.transport_name,
            )
            answer: ConnectReply | None = await self.hooks.on_connect(ctx)
            if answer is not None:
                credentials, reply_data = answer.credentials, answer.data
        if credentials is None:
            if not (self.settings.allow_anonymous or self.settings.insecure):
                raise ReplyError(ErrorCode.UNAUTHORIZED)
            credentials = ANONYMOUS
        self.credentials = credentials
        self.headers = NO_HEADERS  # read only for the on_connect hook: not kept while connected
        conn_info = None if credentials.info is None else to_raw(credentials.info)
        self.hub.set_user(self.session, credentials.user, conn_info)
        self.connected = True
        # A connection made with a token refreshes itself with new tokens; one made without
        # is refreshed by the server through on_refresh, if the app registered it.
        self._server_refresh = self.unidirectional or (not req.token and self.hooks.on_refresh is not None)
        result: Result = {"client": self.session.id, "version": SERVER_VERSION}
        if self.emulation_session is not None:
            result["session"], result["node"] = self.emulation_session, self.hub.node_id
        self._apply_expiry(result, credentials.expire_at)
        if self.settings.ping_interval > 0:
            result["ping"] = max(1, round(self.settings.ping_interval))
            if self.codec.expects_pong:
                result["pong"] = True
        if reply_data is not None:
            result["data"] = self.codec.payload(to_raw(reply_data))
        subs, positions = await self.subscriptions.join_server_side(credentials.channels, req.subs)
        if subs:
            result["subs"] = subs
        self.session.enqueue_reply(
            self.codec.connect(result) if self.unidirectional else self.codec.reply(cmd_id, "connect", result)
        )
        for channel, after in positions.items():
            self.hub.finish_subscribe(self.session, channel, after)
        self.subscriptions.accept_server_subscriptions()
        self.session.start_pinging()

    def _verify_connection(self, token: str) -> Credentials:
        if self.verifier is None:
            raise Disconnect(DisconnectCode.INVALID_TOKEN, "tokens are not configured")
        return self.verifier.connection(token)

    def _apply_expiry(self, result: Result, expire_at: int) -> None:
        """Arm the expiry of the connection at ``expire_at`` (0: never).

        Client-side refresh: the reply tells the client ``expires``/``ttl`` and the connection
        is closed with 3005 ``expired_close_delay`` after expiry unless it sent a new token.
        Server-side refresh: at expiry the server asks ``on_refresh`` for new credentials.
        """
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if not expire_at:
            return
        ttl = ttl_until(expire_at)
        loop = asyncio.get_running_loop()
        if self._server_refresh:
            self._deadline = loop.call_later(ttl, self._refresh_by_server)
            return
        result["expires"], result["ttl"] = True, ttl
        delay = ttl + self.settings.expired_close_delay
        self._deadline = loop.call_later(delay, self.session.close, DisconnectCode.EXPIRED)

    def _refresh_by_server(self) -> None:
        self._deadline = None
        self.session.start_task(self._server_side_refresh(), name="server-refresh")

    async def _server_side_refresh(self) -> None:
        ctx = RefreshContext(client=self.session.id, user=self.session.user, credentials=None)
        try:
            credentials = await self.hooks.on_refresh(ctx) if self.hooks.on_refresh is not None else None
            if credentials is None or credentials.user != self.session.user:
                raise ReplyError(ErrorCode.EXPIRED)
            self._apply_expiry({}, credentials.expire_at)
            refresh = self.codec.refresh(ttl_until(credentials.expire_at))
            if refresh is not None:
                self.session.enqueue(refresh)
        except ReplyError:
            self.session.close(DisconnectCode.EXPIRED)
        except Disconnect as exc:
            self.session.close(exc.code, exc.reason)
        except Exception:  # the hook failed (its database is down, say): the connection expires
            log.exception("on_refresh failed for client %s", self.session.id)
            self.session.close(DisconnectCode.EXPIRED)
        else:
            self.credentials = credentials

    def _refreshed_by_api(self, expire_at: int) -> None:
        """The server API set a new expiry (0: never); one already past closes with 3005."""
        try:
            self._apply_expiry({}, expire_at)
            refresh = self.codec.refresh(ttl_until(expire_at)) if expire_at else None
        except ReplyError:
            self.session.close(DisconnectCode.EXPIRED)
            return
        if refresh is not None:
            self.session.enqueue(refresh)

    async def _refresh(self, req: RefreshRequest) -> Result:
        if not req.token and self.hooks.on_refresh is None:
            raise ReplyError(ErrorCode.BAD_REQUEST, "token required")
        credentials = self._verify_connection(req.token) if req.token else None
        if self.hooks.on_refresh is not None:
            ctx = RefreshContext(client=self.session.id, user=self.session.user, credentials=credentials)
            credentials = await self.hooks.on_refresh(ctx) or credentials
        if credentials is None:
            raise ReplyError(ErrorCode.UNAUTHORIZED)
        if credentials.user != self.session.user:
            raise Disconnect(DisconnectCode.INVALID_TOKEN, "user mismatch")
        self.credentials = credentials
        result: Result = {"client": self.session.id, "version": SERVER_VERSION}
        self._apply_expiry(result, credentials.expire_at)
        return result

    # -- publish, presence, history, rpc ----------------------------------------------

    async def _publish(self, req: PublishRequest) -> Result:
        channel = self.hub.channel(req.channel)
        self._check(Action.PUBLISH, channel)
        data: Any = req.data
        model = channel.options.publish_model
        if model is not None:  # 107 with the validation message; the hook sees the model instance
            data = validate_as(model, from_raw(req.data))
        if self.hooks.on_publish is not None:  # refines an allowed publish: may refuse or rewrite it
            ctx = PublishContext(
                client=self.session.id,
                user=self.session.user,
                channel=req.channel,
                data=from_raw(req.data) if model is None else data,
            )
            replaced = await self.hooks.on_publish(ctx)
            if replaced is not None:
                data = replaced
        sub = self.session.subscriptions.get(req.channel)
        info = self.session.info(sub.chan_info if sub else None)
        await self.hub.publish(req.channel, data, info=info)
        return {}

    def _check(self, action: Action, channel: Channel) -> None:
        """Refuse ``action`` with 103 unless the permission model allows it (see :mod:`.permissions`)."""
        subscribed = channel.name in self.session.subscriptions
        if not may(action, channel, self.session.user, subscribed=subscribed, insecure=self.settings.insecure):
            raise ReplyError(ErrorCode.PERMISSION_DENIED)

    async def _presence(self, method: str, req: ChannelRequest) -> Result:
        channel = self.hub.channel(req.channel)
        if not channel.options.presence:
            raise ReplyError(ErrorCode.NOT_AVAILABLE)
        self._check(Action.PRESENCE, channel)
        if method == "presence_stats":
            clients, users = await self.hub.presence_stats(req.channel)
            return {"num_clients": clients, "num_users": users}
        entries = await self.hub.presence(req.channel)
        return {"presence": {cid: self.codec.client_info_dict(info) for cid, info in entries.items()}}

    async def _history(self, req: HistoryRequest) -> Result:
        channel = self.hub.channel(req.channel)
        if not channel.options.history:
            raise ReplyError(ErrorCode.NOT_AVAILABLE)
        self._check(Action.HISTORY, channel)
        limit = None if req.limit < 0 else req.limit
        result = await self.hub.read_history(req.channel, since=req.since, limit=limit, reverse=req.reverse)
        out: Result = {"publications": [self.codec.publication_dict(p) for p in result.publications]}
        out.update(encode.position_dict(result.position))
        return out

    def _rpc_context(self, method: str) -> RPCContext:
        meta = self.credentials.meta if self.credentials else None
        return RPCContext(client=self.session.id, user=self.session.user, method=method, meta=meta)

    async def _rpc(self, req: RPCRequest) -> Result:
        if not self.hooks.rpc:  # as Centrifugo without an RPC proxy: RPC is not configured at all
            raise ReplyError(ErrorCode.NOT_AVAILABLE)
        handler = self.hooks.rpc.get(req.method)
        if handler is None:
            raise ReplyError(ErrorCode.METHOD_NOT_FOUND)
        data = await handler(self._rpc_context(req.method), from_raw(req.data))
        return {} if data is None else {"data": self.codec.payload(to_raw(data))}
