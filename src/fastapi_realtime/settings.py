"""One typed settings object for a hub, and the options of a channel namespace.

Each limit states its unit, its default and what a client gets when it hits the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .origins import OriginPolicy


@dataclass(frozen=True, slots=True)
class ChannelOptions:
    """What channels of one namespace keep and allow.

    A channel ``chat:lobby`` is in namespace ``chat``; a channel without a colon is in the
    default namespace ``""``. A channel whose namespace is not configured is refused with
    error 102 ``unknown channel``.
    """

    history_size: int = 0
    """Publications kept per channel (0: no history, no offsets, no recovery)."""
    history_ttl: float = 300.0
    """Seconds a channel's history is kept after its last publication."""
    presence: bool = False
    """Track who is subscribed (``Hub.presence``, the ``presence`` command)."""
    join_leave: bool = False
    """Emit join/leave events to subscribers that ask for them (``join_leave`` in subscribe)."""
    allow_subscribe: bool = True
    """Clients may subscribe without a subscription token (``$private`` channels always need one)."""
    allow_publish: bool = False
    """Clients may publish (the server may always publish). Refused with 103 otherwise."""
    allow_history: bool = True
    """Subscribers may read history (when ``history_size > 0``); others get 103."""
    allow_presence: bool = True
    """Subscribers may read presence (when ``presence``); others get 103."""
    allow_recovery: bool = True
    """Subscribers may recover missed publications after a reconnect (needs history)."""

    def __post_init__(self) -> None:
        if self.history_size < 0 or self.history_ttl <= 0:
            raise ValueError("history_size must be >= 0 and history_ttl > 0")

    @property
    def history(self) -> bool:
        return self.history_size > 0


@dataclass(frozen=True, slots=True)
class HubSettings:
    """Everything a hub can be told. Every field has a safe default."""

    namespaces: Mapping[str, ChannelOptions] = field(default_factory=lambda: {"": ChannelOptions()})
    """Namespace name -> options. ``""`` is the default namespace (channels without a colon)."""
    channel_max_length: int = 255
    """Longest channel name, in characters. Longer: error 107 bad request."""

    client_queue_max_bytes: int = 1024 * 1024
    """Bytes waiting to be written to one client. Over it: disconnect 3008 ``slow``."""
    client_max_frame_bytes: int = 64 * 1024
    """Largest incoming frame, in bytes. Over it: close 1009 ``message too big``."""
    client_max_batch_bytes: int = 64 * 1024
    """Largest outgoing frame the writer builds when it batches queued messages, in bytes."""
    client_channel_limit: int = 128
    """Channels one client may be subscribed to. Over it: error 106 ``limit exceeded``."""
    client_command_rate: float = 100.0
    """Commands per second one client may send, sustained (a token bucket)."""
    client_command_burst: int = 200
    """Commands one client may send at once. Over the bucket: error 111 ``too many requests``;
    after ``client_command_burst`` refusals in a row: disconnect 3013."""
    publish_slice: float = 0.1
    """Seconds back-to-back publishing may hold the event loop before ``publish`` yields, so a
    burst cannot freeze other work. Larger: more messages per frame, longer stalls (see
    ``bench/fanout.py``)."""
    max_connections: int = 20_000
    """Connections one hub accepts at once. Over it: close 3504 ``connection limit``."""

    ping_interval: float = 25.0
    """Seconds between server pings (0 disables them)."""
    pong_timeout: float = 8.0
    """Seconds a client has to answer a ping. Late: disconnect 3012 ``no pong``."""

    client_stale_close_delay: float = 10.0
    """Seconds a new connection has to send ``connect``. Late: close 3502 ``stale``."""

    allow_anonymous: bool = False
    """Accept a connect without a token (user ``""``). Refused otherwise with error 101."""
    expired_close_delay: float = 25.0
    """Seconds past a token's expiry before the connection is closed with 3005 (or the
    subscription ended with 2501) when the client has not refreshed it."""

    history_meta_ttl: float = 30 * 24 * 3600.0
    """Seconds a channel's offset and epoch outlive its last publication; then a new epoch starts."""
    history_empty_ttl: float = 300.0
    """Seconds the position (epoch, offset 0) of a channel that was never published to is kept
    after the last positioned subscribe to it or read of it; a publication within that time
    continues the epoch. (The broker's ``max_empty_streams`` caps such positions: error 106.)"""
    recovery_max_publications: int = 300
    """Most publications a resubscribe recovers; a larger gap is not recovered."""
    presence_ttl: float = 60.0
    """Seconds a presence entry lives unless refreshed (covers crashed nodes)."""
    presence_refresh_interval: float = 25.0
    """Seconds between refreshes of this hub's presence entries."""
    shutdown_timeout: float = 5.0
    """Seconds ``Hub.close`` waits for clients to be told and closed."""

    idempotency_window: float = 300.0
    """Seconds a publish's ``idempotency_key`` is remembered per channel: a publish repeating
    a key within it is not delivered again and returns the first one's result."""
    idempotency_max_keys: int = 10_000
    """Idempotency keys remembered at once. Over it the oldest key is forgotten early, so a
    retry with that key would be delivered again."""
    api_max_body_bytes: int = 4 * 1024 * 1024
    """Largest HTTP server API request body, in bytes. Over it: HTTP 413 with error 107."""
    api_max_commands: int = 1000
    """Most commands in one API ``batch`` and channels in one ``broadcast``. Over it: error 107."""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed to connect besides the same origin as the ``Host`` header:
    exact origins (``"https://app.example.com"``), subdomain patterns
    (``"https://*.example.com"``) or ``"*"`` (any). Requests without ``Origin`` (not browsers)
    are always allowed. Refused: HTTP 403 at the handshake (see :mod:`.origins`)."""
    handshake_timeout: float = 10.0
    """Seconds a client has to send a complete HTTP request line and headers (the WebSocket
    upgrade request) on a server started by ``fastapi_realtime.run``. Late: HTTP 408, connection
    closed."""
    server_connections_per_ip: int = 1000
    """TCP connections one client IP may hold open at once on a server started by
    ``fastapi_realtime.run``. Over it: HTTP 503, connection closed before its request is read.
    Behind a reverse proxy every client has the proxy's address: raise it to the total you accept."""

    def __post_init__(self) -> None:
        positive = {
            "channel_max_length": self.channel_max_length,
            "client_queue_max_bytes": self.client_queue_max_bytes,
            "client_max_frame_bytes": self.client_max_frame_bytes,
            "client_max_batch_bytes": self.client_max_batch_bytes,
            "client_channel_limit": self.client_channel_limit,
            "client_command_rate": self.client_command_rate,
            "client_command_burst": self.client_command_burst,
            "max_connections": self.max_connections,
            "pong_timeout": self.pong_timeout,
            "client_stale_close_delay": self.client_stale_close_delay,
            "presence_ttl": self.presence_ttl,
            "history_empty_ttl": self.history_empty_ttl,
            "presence_refresh_interval": self.presence_refresh_interval,
            "idempotency_window": self.idempotency_window,
            "idempotency_max_keys": self.idempotency_max_keys,
            "api_max_body_bytes": self.api_max_body_bytes,
            "api_max_commands": self.api_max_commands,
            "handshake_timeout": self.handshake_timeout,
            "server_connections_per_ip": self.server_connections_per_ip,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.ping_interval < 0 or self.publish_slice < 0:
            raise ValueError("ping_interval and publish_slice must be >= 0")
        if self.ping_interval and self.pong_timeout >= self.ping_interval:
            raise ValueError("pong_timeout must be shorter than ping_interval")
        if isinstance(self.allowed_origins, str):
            raise ValueError("allowed_origins must be a tuple of origins, not one string")
        OriginPolicy(self.allowed_origins)  # raises ValueError for a malformed entry
