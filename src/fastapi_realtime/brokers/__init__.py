"""Brokers: the interface every broker implements and the in-memory default."""

from .base import (
    Broker,
    BrokerError,
    BrokerEvents,
    BrokerUnavailable,
    HistoryResult,
    PublishOptions,
    StreamLimitExceeded,
)
from .memory import MemoryBroker

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerEvents",
    "BrokerUnavailable",
    "HistoryResult",
    "MemoryBroker",
    "PublishOptions",
    "StreamLimitExceeded",
]
