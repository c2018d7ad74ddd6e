"""One typed settings object for a hub, and the options of a channel namespace.

Each limit states its unit, its default and what a client gets when it hits the limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any

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
    # -- who may do what (Centrifugo's names and meaning). "client": any connection, subscribed
    # or not; "subscriber": connections subscribed to the channel; "anonymous": lets the
    # matching "client"/"subscriber" rule also cover connections without a user (user "").
    # Whatever they say, a ``$`` channel is readable only with a subscription token or an
    # ``on_subscribe`` grant, so its "client" rules reach only its subscribers; a ``#42``
    # channel only ever admits user 42; ``HubSettings.insecure`` allows everything.
    allow_subscribe_for_client: bool = True
    """Authenticated clients may subscribe without a subscription token (not to ``$`` channels)."""
    allow_subscribe_for_anonymous: bool = True
    """... and so may anonymous ones (the hub admits them only with ``HubSettings.allow_anonymous``)."""
    allow_publish_for_subscriber: bool = False
    """Subscribers may publish into the channel. Refused with 103 otherwise."""
    allow_publish_for_client: bool = False
    """Any client may publish, subscribed or not (only subscribers for ``$`` channels)."""
    allow_publish_for_anonymous: bool = False
    """Anonymous clients may publish where one of the two rules above allows it."""
    allow_history_for_subscriber: bool = True
    """Subscribers may read history (when ``history_size > 0``); others get 103."""
    allow_history_for_client: bool = False
    """Any client may read history, subscribed or not (only subscribers for ``$`` channels)."""
    allow_history_for_anonymous: bool = True
    """Anonymous clients may read history where one of the two rules above allows it."""
    allow_presence_for_subscriber: bool = True
    """Subscribers may read presence and presence stats (when ``presence``); others get 103."""
    allow_presence_for_client: bool = False
    """Any client may read presence, subscribed or not (only subscribers for ``$`` channels)."""
    allow_presence_for_anonymous: bool = True
    """Anonymous clients may read presence where one of the two rules above allows it."""
    allow_recovery: bool = True
    """Subscribers may recover missed publications after a reconnect (needs history)."""
    publish_model: Any = None
    """A pydantic model class (anything with ``model_validate``) that client publications must
    match; others get error 107 with the validation message. ``on_publish`` then sees the
    model instance as ``ctx.data``, and the validated data is what is published."""
    # -- what the server turns on whatever the client asked (Centrifugo's force_* options)
    force_positioning: bool = False
    """Every subscription is positioned (needs history): the reply carries the stream position
    and a gap closes the subscription with 2500 (the SDK resubscribes)."""
    force_recovery: bool = False
    """Every subscription is positioned and recoverable (needs history and ``allow_recovery``):
    the SDKs recover after a reconnect even when the app did not ask for it."""
    force_push_join_leave: bool = False
    """Every subscriber gets join/leave events (needs ``join_leave``), asked for or not."""
    recovery_mode: str = "stream"
    """``"stream"``: a recovering subscriber gets every publication it missed (up to
    ``HubSettings.recovery_max_publications``). ``"cache"``: it gets only the latest publication,
    for channels whose publications each carry the whole state (Centrifugo's
    ``force_recovery_mode: cache``)."""
    allowed_delta_types: tuple[str, ...] = ()
    """Delta types subscribers may ask for (``("fossil",)``); empty: none. A subscriber that asks
    for one listed here gets each publication as a fossil delta against the previous one."""
    allow_tags_filter: bool = False
    """Subscribers may send a tags filter (``tf``) and then get only the publications whose tags
    match it. Without this, a subscribe with a filter gets error 107."""

    # The names of releases before the split, kept so existing code runs unchanged. Each sets
    # its whole group: ``allow_publish=True`` is ``allow_publish_for_client`` plus
    # ``allow_publish_for_anonymous`` (what it allowed before, minus the holes the permission
    # model closes); ``allow_subscribe``, ``allow_history`` and ``allow_presence`` set their
    # ``_for_client``/``_for_subscriber`` and ``_for_anonymous`` rules as they were.
    allow_publish: InitVar[bool | None] = None
    allow_subscribe: InitVar[bool | None] = None
    allow_history: InitVar[bool | None] = None
    allow_presence: InitVar[bool | None] = None

    def __post_init__(
        self,
        allow_publish: bool | None,
        allow_subscribe: bool | None,
        allow_history: bool | None,
        allow_presence: bool | None,
    ) -> None:
        if self.history_size < 0 or self.history_ttl <= 0:
            raise ValueError("history_size must be >= 0 and history_ttl > 0")
        if self.recovery_mode not in ("stream", "cache"):
            raise ValueError("recovery_mode must be 'stream' or 'cache'")
        unknown = set(self.allowed_delta_types) - {"fossil"}
        if unknown:
            raise ValueError(f"allowed_delta_types: unknown delta types {sorted(unknown)} (only 'fossil')")
        legacy = {
            ("allow_publish_for_client", "allow_publish_for_anonymous"): allow_publish,
            ("allow_subscribe_for_client", "allow_subscribe_for_anonymous"): allow_subscribe,
            ("allow_history_for_subscriber", "allow_history_for_anonymous"): allow_history,
            ("allow_presence_for_subscriber", "allow_presence_for_anonymous"): allow_presence,
        }
        for names, value in legacy.items():
            if value is not None:
                for name in names:
                    object.__setattr__(self, name, value)

    @property
    def history(self) -> bool:
        return self.history_size > 0


INSECURE_ENV = ("FASTAPI_REALTIME_INSECURE", "I know")
"""The environment variable, and its value, without which a hub with ``insecure=True`` refuses
to start."""


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
    sse_event_id_max_bytes: int = 4096
    """Longest SSE event id (the stream positions of a ``uni_sse`` reader), in bytes. A longer
    id is not sent (the reader keeps its previous one: a reconnect then recovers from there
    and may repeat publications); a longer ``Last-Event-ID`` is refused with HTTP 400."""
    emulation_queue_max_requests: int = 64
    """``/emulation`` requests (centrifuge-js ``http_stream``/``sse`` commands) waiting for
    their session to read them. Over it: HTTP 429 (the command times out on the client)."""
    client_reply_max_bytes: int = 16 * 1024 * 1024
    """Largest reply to one command (history, a subscribe with recovered publications, RPC),
    in characters. Replies are not counted against ``client_queue_max_bytes``. Over it:
    error 106 ``limit exceeded`` (history, RPC, presence), or ``recovered: false`` for a
    recovery (the client then knows it missed publications)."""
    client_channel_limit: int = 128
    """Channels one client may be subscribed to. Over it: error 106 ``limit exceeded``."""
    client_command_rate: float = 100.0
    """Commands per second one client may send, sustained (a token bucket)."""
    client_command_burst: int = 200
    """Commands one client may send at once. Over the bucket: error 111 ``too many requests``."""
    client_command_refusals: int = 100
    """Error-111 refusals one client may collect within ``client_command_refusals_window``.
    One more: disconnect 3013 ``too many requests`` (the SDKs reconnect with backoff)."""
    client_command_refusals_window: float = 10.0
    """Seconds of the refusal window. It opens at a client's first refusal and closes this long
    after; the next refusal opens a new one. A client refused at more than
    ``client_command_refusals / client_command_refusals_window`` per second is disconnected,
    however many of its commands are accepted in between."""
    publish_slice: float = 0.1
    """Seconds back-to-back publishing may hold the event loop before ``publish`` yields, so a
    burst cannot freeze other work. Larger: more messages per frame, longer stalls (see
    ``bench/fanout.py``)."""
    max_connections: int = 20_000
    """Connections one hub accepts at once. Over it: close 3504 ``connection limit``."""
    max_connections_per_user: int = 100
    """Connections of one user (not anonymous ones) one hub accepts at once. Over it: close 3504
    ``connection limit`` at connect."""
    max_connections_per_ip: int = 1_000
    """Connections from one client IP one hub accepts at once. Over it: close 3504 ``connection
    limit``. The IP is the ASGI server's view (``websocket.client``): behind a proxy, run uvicorn
    with ``--proxy-headers --forwarded-allow-ips=<proxy IP>`` or every client shares the proxy's."""
    connect_rate_per_ip: float = 20.0
    """New connections per second from one client IP, sustained (a token bucket)."""
    connect_burst_per_ip: int = 100
    """New connections from one client IP at once. Over the bucket: close 3013 ``too many
    requests`` (the SDKs reconnect with backoff)."""
    presence_max_clients: int = 10_000
    """Clients in the presence of one channel (namespaces with ``presence``). A subscribe that
    would go over it: error 106 ``limit exceeded``. Checked against the broker before the
    client is added, so subscribes racing on several hubs may pass it by a few."""

    ping_interval: float = 25.0
    """Seconds between server pings (0 disables them)."""
    pong_timeout: float = 8.0
    """Seconds a client has to answer a ping. Late: disconnect 3012 ``no pong``."""

    client_stale_close_delay: float = 10.0
    """Seconds a new connection has to send ``connect``. Late: close 3502 ``stale``."""

    allow_anonymous: bool = False
    """Accept a connect without a token (user ``""``). Refused otherwise with error 101."""
    insecure: bool = False
    """Development only, as Centrifugo's ``client.insecure``: connect without a token, and
    subscribe, publish, read history and presence in every channel (``$`` and ``#`` ones too).
    The hub refuses to start with it unless the environment variable
    ``FASTAPI_REALTIME_INSECURE`` is ``"I know"`` (see :data:`INSECURE_ENV`), and logs a warning
    when it starts: a committed ``insecure=True`` cannot open a production deployment."""
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
    delta_max_bytes: int = 64 * 1024
    """Largest payload, in bytes, that delta compression works on (the fossil encoder is pure
    Python: ~0.4 ms for 5 KB, see ``bench/delta.py``). A publication larger than this, or following
    one, goes to delta subscribers as a full payload (no error)."""
    tags_filter_max_nodes: int = 64
    """Nodes (comparisons and and/or/not) in one subscription's tags filter. More: error 107
    ``bad request`` for that subscribe."""
    presence_ttl: float = 60.0
    """Seconds a presence entry lives unless refreshed (covers crashed nodes)."""
    presence_refresh_interval: float = 25.0
    """Seconds between refreshes of this hub's presence entries."""
    shutdown_timeout: float = 5.0
    """Seconds ``Hub.close`` waits for clients to be told and closed."""
    handle_signals: bool = True
    """On SIGTERM/SIGINT, close every client with 3001 (queues flushed, within
    ``shutdown_timeout``) before the server's own signal handler runs (see ``signals.py``)."""
    tune_gc: bool = True
    """At start, freeze the objects that exist (imports, the app) out of the garbage
    collector's reach and collect young objects every 10,000 allocations instead of 700 (see
    ``gctuning.py``): connecting thousands of clients costs half the CPU. A process-wide
    setting; ``False`` leaves the collector as it is."""

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
    position_check_interval: float = 10.0
    """Seconds between checks of the stream top of every channel with positioned subscribers
    on this hub (0: check only after the broker reconnects). A subscription that missed
    publications recovers: protocol clients get unsubscribe 2500 ``insufficient state`` and
    resubscribe, recovering from history. Catches a loss that no later publication reveals."""
    position_check_grace: float = 1.0
    """Seconds a publication may be on its way from the broker to this hub. A subscription
    still below a stream top read this long ago missed publications; one that catches up
    within it had them in flight."""
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
            "client_reply_max_bytes": self.client_reply_max_bytes,
            "client_channel_limit": self.client_channel_limit,
            "client_command_rate": self.client_command_rate,
            "client_command_burst": self.client_command_burst,
            "client_command_refusals": self.client_command_refusals,
            "client_command_refusals_window": self.client_command_refusals_window,
            "max_connections": self.max_connections,
            "max_connections_per_user": self.max_connections_per_user,
            "max_connections_per_ip": self.max_connections_per_ip,
            "connect_rate_per_ip": self.connect_rate_per_ip,
            "connect_burst_per_ip": self.connect_burst_per_ip,
            "presence_max_clients": self.presence_max_clients,
            "pong_timeout": self.pong_timeout,
            "client_stale_close_delay": self.client_stale_close_delay,
            "presence_ttl": self.presence_ttl,
            "history_empty_ttl": self.history_empty_ttl,
            "presence_refresh_interval": self.presence_refresh_interval,
            "idempotency_window": self.idempotency_window,
            "idempotency_max_keys": self.idempotency_max_keys,
            "api_max_body_bytes": self.api_max_body_bytes,
            "api_max_commands": self.api_max_commands,
            "position_check_grace": self.position_check_grace,
            "handshake_timeout": self.handshake_timeout,
            "server_connections_per_ip": self.server_connections_per_ip,
            "tags_filter_max_nodes": self.tags_filter_max_nodes,
            "delta_max_bytes": self.delta_max_bytes,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.ping_interval < 0 or self.publish_slice < 0 or self.position_check_interval < 0:
            raise ValueError("ping_interval, publish_slice and position_check_interval must be >= 0")
        if self.ping_interval and self.pong_timeout >= self.ping_interval:
            raise ValueError("pong_timeout must be shorter than ping_interval")
        if isinstance(self.allowed_origins, str):
            raise ValueError("allowed_origins must be a tuple of origins, not one string")
        OriginPolicy(self.allowed_origins)  # raises ValueError for a malformed entry
