"""HubSettings and ChannelOptions refuse nonsensical limits when they are built."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fastapi_realtime.settings import ChannelOptions, HubSettings

POSITIVE = [
    "channel_max_length",
    "client_queue_max_bytes",
    "client_max_frame_bytes",
    "client_max_batch_bytes",
    "client_channel_limit",
    "client_command_rate",
    "client_command_burst",
    "max_connections",
    "client_command_refusals",
    "client_command_refusals_window",
    "max_connections_per_user",
    "max_connections_per_ip",
    "connect_rate_per_ip",
    "connect_burst_per_ip",
    "presence_max_clients",
    "pong_timeout",
    "presence_ttl",
    "presence_refresh_interval",
]


def test_defaults_are_valid() -> None:
    settings = HubSettings()
    assert settings.namespaces == {"": ChannelOptions()}
    assert settings.client_max_frame_bytes == 64 * 1024
    assert settings.allow_anonymous is False


@pytest.mark.parametrize("name", POSITIVE)
@pytest.mark.parametrize("value", [0, -1])
def test_limits_must_be_positive(name: str, value: int) -> None:
    kwargs: dict[str, Any] = {name: value}
    with pytest.raises(ValueError, match=name):
        HubSettings(**kwargs)


@pytest.mark.parametrize("name", POSITIVE)
def test_smallest_positive_limit_is_accepted(name: str) -> None:
    kwargs: dict[str, Any] = {name: 1}
    assert getattr(HubSettings(**kwargs), name) == 1


def test_ping_interval_may_be_zero_but_not_negative() -> None:
    assert HubSettings(ping_interval=0).ping_interval == 0
    with pytest.raises(ValueError, match="ping_interval"):
        HubSettings(ping_interval=-1)


@pytest.mark.parametrize("kwargs", [{"history_size": -1}, {"history_ttl": 0}, {"history_ttl": -5.0}])
def test_channel_options_refuse_negative_history(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="history"):
        ChannelOptions(**kwargs)  # type: ignore[arg-type]


def test_history_is_on_when_history_size_is_positive() -> None:
    assert ChannelOptions(history_size=0).history is False
    assert ChannelOptions(history_size=1).history is True


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        HubSettings().max_connections = 1  # type: ignore[misc]
