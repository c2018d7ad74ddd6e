"""In-process hooks: the FastAPI-native equivalent of Centrifugo's proxy feature.

Register async callables on the hub (``@hub.on_connect``, ``@hub.on_subscribe``,
``@hub.on_publish``, ``@hub.rpc("name")``, ``@hub.on_refresh``). A hook may use the app's own
auth and database, return data for the client, or refuse with
:class:`~.protocol.errors.ReplyError` (an error reply) or :class:`~.protocol.errors.Disconnect`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who a connection is, as a token or ``on_connect`` says.

    ``expire_at`` is a Unix time in seconds (0: never); past it the client must refresh or be
    disconnected with 3005. ``channels`` are server-side subscriptions made at connect.
    """

    user: str
    info: Any = None
    expire_at: int = 0
    channels: Sequence[str] = ()
    meta: Any = None


@dataclass(frozen=True, slots=True)
class SubscriptionGrant:
    """What a subscription token or ``on_subscribe`` allows: chan_info, expiry, reply data."""

    info: Any = None
    expire_at: int = 0
    data: Any = None


class TokenVerifier(Protocol):
    """Checks tokens. :class:`~.auth.JWTAuth` is the one shipped; anything with these methods works.

    Both raise :class:`~.protocol.errors.ReplyError` 109 for an expired token and
    :class:`~.protocol.errors.Disconnect` 3500 for an invalid one. For a ``subscribe`` the hub
    turns that 3500 into error 103 (the connection stays, as with Centrifugo); for ``connect``,
    ``refresh`` and ``sub_refresh`` the connection is closed.
    """

    def connection(self, token: str) -> Credentials: ...
    def subscription(self, token: str, channel: str, user: str) -> SubscriptionGrant: ...


@dataclass(frozen=True, slots=True)
class ConnectContext:
    """What ``on_connect`` sees. ``credentials`` is what the token said (``None`` without one)."""

    client: str
    credentials: Credentials | None
    data: Any
    name: str
    version: str
    headers: Mapping[str, str]
    transport: str


@dataclass(frozen=True, slots=True)
class ConnectReply:
    """What ``on_connect`` may return: credentials to use, and data for the connect reply."""

    credentials: Credentials
    data: Any = None


@dataclass(frozen=True, slots=True)
class SubscribeContext:
    """What ``on_subscribe`` sees. ``grant`` is what a subscription token said, if any.

    Returning a grant allows the subscription (``$`` channels and namespaces closed to clients
    included, as a subscription token does); ``None`` leaves the namespace's rules to decide;
    raising refuses. No grant opens a channel of another user's ``#`` list.
    """

    client: str
    user: str
    channel: str
    data: Any
    grant: SubscriptionGrant | None


@dataclass(frozen=True, slots=True)
class PublishContext:
    """What ``on_publish`` sees. It runs only for a publication the permission model already
    allows (see :mod:`~fastapi_realtime.permissions`): raising refuses it, returning a value
    replaces the published data, returning ``None`` keeps it."""

    client: str
    user: str
    channel: str
    data: Any


@dataclass(frozen=True, slots=True)
class RPCContext:
    client: str
    user: str
    method: str
    meta: Any


@dataclass(frozen=True, slots=True)
class RefreshContext:
    """What ``on_refresh`` sees.

    Two cases: a client sent ``refresh`` (``credentials`` is what its new token said, or
    ``None`` without a token), or a connection made without a token reached its
    ``expire_at`` and the server asks for new credentials (``credentials`` is ``None``).
    Return credentials with a later ``expire_at`` to extend the connection; return ``None``
    or raise :class:`~.protocol.errors.ReplyError` to let it expire (close 3005); raise
    :class:`~.protocol.errors.Disconnect` to close it with your own code. Any other exception
    is logged and the connection expires.
    """

    client: str
    user: str
    credentials: Credentials | None


OnConnect = Callable[[ConnectContext], Awaitable[ConnectReply | None]]
OnSubscribe = Callable[[SubscribeContext], Awaitable[SubscriptionGrant | None]]
OnPublish = Callable[[PublishContext], Awaitable[Any]]
OnRPC = Callable[[RPCContext, Any], Awaitable[Any]]
OnRefresh = Callable[[RefreshContext], Awaitable[Credentials | None]]
OnMessage = Callable[[RPCContext, Any], Awaitable[None]]


@dataclass(slots=True)
class Hooks:
    """The hooks of one hub. ``None`` means: the default rule applies."""

    on_connect: OnConnect | None = None
    on_subscribe: OnSubscribe | None = None
    on_publish: OnPublish | None = None
    on_refresh: OnRefresh | None = None
    on_message: OnMessage | None = None
    """Called for each ``send`` (a fire-and-forget message from the client)."""
    rpc: dict[str, OnRPC] = field(default_factory=dict)
