"""ServerConfig and the Centrifugo translation, in process (the CLI tests run them as subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastapi_realtime import ChannelOptions, JWTAuth
from fastapi_realtime.brokers.memory import MemoryBroker
from fastapi_realtime.server import centrifugo
from fastapi_realtime.server.config import ConfigError, load_config


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("25s", 25.0), ("1m30s", 90.0), ("720h", 2_592_000.0), ("500ms", 0.5), ("1.5h", 5400.0), ("0", 0.0), (7, 7.0)],
)
def test_go_durations(text: str | int, seconds: float) -> None:
    assert centrifugo.duration(text) == seconds


@pytest.mark.parametrize("text", ["", "25", "s", "1d", "25 s", "-1s", True])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        centrifugo.duration(text)


def test_a_centrifugo_yaml_file_is_translated(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        """
client:
  token:
    hmac_secret_key: secret
  allow_anonymous_connect_without_token: true
  queue_max_size: 2048
channel:
  namespaces:
    - name: feed
      history_size: 5
      history_ttl: 1m
      allow_history_for_subscriber: false
engine:
  type: redis
  redis:
    address: 127.0.0.1:6390
    prefix: app
"""
    )
    config = load_config(path, environ={})
    settings = config.hub_settings()
    assert settings.allow_anonymous is True
    assert settings.client_queue_max_bytes == 2048
    assert settings.namespaces["feed"] == ChannelOptions(
        history_size=5, history_ttl=60.0, allow_history_for_subscriber=False
    )
    assert settings.namespaces[""] == ChannelOptions()
    assert config.broker == "redis://127.0.0.1:6390"
    assert config.redis.prefix == "app"
    assert isinstance(config.auth(), JWTAuth)


def test_engine_memory_ignores_a_redis_address() -> None:
    out = centrifugo.translate({"engine": {"type": "memory", "redis": {"address": "x:1"}}})
    assert out == {"broker": "memory"}


def test_admin_password_applies_only_when_admin_is_enabled() -> None:
    assert centrifugo.translate({"admin": {"password": "p"}}) == {}
    assert centrifugo.translate({"admin": {"enabled": True, "password": "p"}}) == {"admin_password": "p"}


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"engine": {"redis": {"address": ["a:1", "b:2"]}, "type": "redis"}}, "engine.redis.address"),
        ({"channel": {"namespaces": [{"presence": True}]}}, "channel.namespaces[0]"),
        ({"channel": {"namespaces": {"chat": {}}}}, "channel.namespaces"),
        ({"client": {"ping_interval": "soon"}}, "client.ping_interval"),
        (
            {"channel": {"without_namespace": {"auto_cache_recovery": True}}},
            "channel.without_namespace.auto_cache_recovery",
        ),
    ],
)
def test_translation_errors_name_the_option(data: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named.replace("[", r"\[").replace("]", r"\]")):
        centrifugo.translate(data)


def test_defaults_need_no_file_and_build_a_memory_hub() -> None:
    config = load_config(environ={})
    assert config.auth() is None
    assert isinstance(config.make_broker(), MemoryBroker)
    assert config.hub_settings().namespaces == {"": ChannelOptions()}


def test_environment_values_are_typed_and_nested() -> None:
    config = load_config(
        environ={
            "FASTAPI_REALTIME_LIMITS__CLIENT_COMMAND_RATE": "12.5",
            "FASTAPI_REALTIME_NAMESPACES": '{"chat": {"presence": true}}',
            "FASTAPI_REALTIME_ALLOWED_ORIGINS": '["https://a.example"]',
            "FASTAPI_REALTIME_TOKEN__HMAC_SECRET": "s",
        }
    )
    assert config.hub_settings().client_command_rate == 12.5
    assert config.hub_settings().namespaces["chat"].presence is True
    assert config.hub_settings().allowed_origins == ("https://a.example",)
    assert config.token.hmac_secret is not None and config.token.hmac_secret.get_secret_value() == "s"


def test_a_bad_environment_value_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"limits\.max_connections"):
        load_config(environ={"FASTAPI_REALTIME_LIMITS__MAX_CONNECTIONS": "many"})


def test_revealed_config_round_trips_for_workers() -> None:
    from fastapi_realtime.server.config import ServerConfig

    config = load_config(overrides={"api_key": "k", "namespaces": {"chat": {"history_size": 3}}}, environ={})
    again = ServerConfig.model_validate(config.revealed())
    assert again.api_key is not None and again.api_key.get_secret_value() == "k"
    assert again.hub_settings() == config.hub_settings()


def test_centrifugo_subscribe_options_keep_their_names_and_force_recovery_mode_is_recovery_mode() -> None:
    data = {
        "channel": {
            "namespaces": [
                {
                    "name": "state",
                    "history_size": 10,
                    "history_ttl": "60s",
                    "force_recovery": True,
                    "force_positioning": True,
                    "force_push_join_leave": True,
                    "force_recovery_mode": "cache",
                    "allowed_delta_types": ["fossil"],
                    "allow_tags_filter": True,
                }
            ]
        }
    }
    state = centrifugo.translate(data)["namespaces"]["state"]
    assert state == {
        "history_size": 10,
        "history_ttl": 60.0,
        "force_recovery": True,
        "force_positioning": True,
        "force_push_join_leave": True,
        "recovery_mode": "cache",
        "allowed_delta_types": ["fossil"],
        "allow_tags_filter": True,
    }
    config = load_config(None, {"namespaces": {"state": state}}, environ={})
    options = config.hub_settings().namespaces["state"]
    assert (options.recovery_mode, tuple(options.allowed_delta_types)) == ("cache", ("fossil",))
