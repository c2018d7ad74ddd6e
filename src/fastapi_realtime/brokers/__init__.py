"""Brokers: the interface every broker implements and the in-memory default."""

from .base import Broker, BrokerEvents, HistoryResult, PublishOptions
from .memory import MemoryBroker

__all__ = ["Broker", "BrokerEvents", "HistoryResult", "MemoryBroker", "PublishOptions"]
