"""fastapi-realtime: the real-time layer for FastAPI.

Channels, broadcast, presence with join/leave, history with recovery, server-side publish
from anywhere, JWT auth and hooks, over the Centrifuge client protocol so the official
SDKs work unchanged; plus a safe tutorial-style API for hand-written endpoints.
"""

from ._version import __version__
from .app import Hub
from .auth import JWTAuth
from .brokers import Broker, BrokerError, BrokerEvents, BrokerUnavailable, HistoryResult, MemoryBroker, PublishOptions
from .connection import Connection
from .hooks import (
    ConnectContext,
    ConnectReply,
    Credentials,
    PublishContext,
    RefreshContext,
    RPCContext,
    SubscribeContext,
    SubscriptionGrant,
)
from .logredact import install_log_redaction
from .protocol import (
    ClientInfo,
    Disconnect,
    DisconnectCode,
    ErrorCode,
    Publication,
    RealtimeError,
    ReplyError,
    StreamPosition,
    UnsubscribeCode,
)
from .serve import run, uvicorn_config
from .settings import ChannelOptions, HubSettings

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerEvents",
    "BrokerUnavailable",
    "ChannelOptions",
    "ClientInfo",
    "ConnectContext",
    "ConnectReply",
    "Connection",
    "Credentials",
    "Disconnect",
    "DisconnectCode",
    "ErrorCode",
    "HistoryResult",
    "Hub",
    "HubSettings",
    "JWTAuth",
    "MemoryBroker",
    "Publication",
    "PublishContext",
    "PublishOptions",
    "RPCContext",
    "RealtimeError",
    "RefreshContext",
    "ReplyError",
    "StreamPosition",
    "SubscribeContext",
    "SubscriptionGrant",
    "UnsubscribeCode",
    "__version__",
    "install_log_redaction",
    "run",
    "uvicorn_config",
]
