"""Translate the common subset of a Centrifugo v6 config into this server's own format.

Centrifugo v6 nests its options (``client.token.hmac_secret_key``, ``channel.namespaces[]``,
``http_api.key``, ...). Every option listed in :data:`OPTIONS` is mapped, and a channel
option is taken when :class:`~fastapi_realtime.ChannelOptions` has a field of its name (they
use Centrifugo's names); any other option is an error naming it, so a setting never silently
stops applying. Durations are Go duration strings (``"25s"``, ``"720h"``).
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Convert = Callable[[Any], Any]

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(value: Any) -> float:
    """Seconds in a Go duration string (``"1h30m"``, ``"500ms"``); a number is taken as seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a duration: {value!r}")
    if value == "0":
        return 0.0
    parts = _DURATION_PART.findall(value)
    if "".join(number + unit for number, unit in parts) != value:
        raise ValueError(f"not a duration: {value!r} (use e.g. '25s', '1m30s', '720h')")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _same(value: Any) -> Any:
    return value


def _redis_url(value: Any) -> str:
    addresses = [value] if isinstance(value, str) else value
    if not isinstance(addresses, list) or len(addresses) != 1 or not isinstance(addresses[0], str):
        raise ValueError("engine.redis.address: give one Redis address (sharding over several is not supported)")
    address: str = addresses[0]
    return address if "://" in address else f"redis://{address}"


def _engine(value: Any) -> str:
    if value not in ("memory", "redis"):
        raise ValueError(f"engine.type: {value!r} is not supported (memory or redis)")
    return str(value)


OPTIONS: dict[str, tuple[str, Convert]] = {
    "client.token.hmac_secret_key": ("token.hmac_secret", _same),
    "client.token.rsa_public_key": ("token.public_key", _same),
    "client.token.ecdsa_public_key": ("token.public_key", _same),
    "client.token.audience": ("token.audience", _same),
    "client.token.issuer": ("token.issuer", _same),
    "client.allowed_origins": ("allowed_origins", _same),
    "client.allow_anonymous_connect_without_token": ("limits.allow_anonymous", _same),
    "client.channel_limit": ("limits.client_channel_limit", _same),
    "client.queue_max_size": ("limits.client_queue_max_bytes", _same),
    "client.connection_limit": ("limits.max_connections", _same),
    "client.ping_interval": ("limits.ping_interval", duration),
    "client.pong_timeout": ("limits.pong_timeout", duration),
    "client.expired_close_delay": ("limits.expired_close_delay", duration),
    "client.stale_close_delay": ("limits.client_stale_close_delay", duration),
    "client.recovery_max_publication_limit": ("limits.recovery_max_publications", _same),
    "channel.max_length": ("limits.channel_max_length", _same),
    "channel.history_meta_ttl": ("limits.history_meta_ttl", duration),
    "websocket.message_size_limit": ("limits.client_max_frame_bytes", _same),
    "uni_websocket.enabled": ("uni_websocket", _same),
    "http_api.key": ("api_key", _same),
    "admin.password": ("admin_password", _same),
    "http_server.address": ("host", _same),
    "http_server.port": ("port", int),
    "engine.type": ("broker", _engine),
    "engine.redis.address": ("broker", _redis_url),
    "engine.redis.prefix": ("redis.prefix", _same),
    "log.level": ("log_level", _same),
    "prometheus.enabled": ("metrics", _same),
}
"""Centrifugo option -> (this server's key, conversion)."""

ALWAYS_ON = {"health.enabled", "admin.secret"}
"""Accepted and without effect: ``/health`` is always served; the admin page needs no
session secret (it sends the password with each request)."""


def translate(data: Mapping[str, Any], channel_fields: frozenset[str] | None = None) -> dict[str, Any]:
    """This server's config (nested dict) for a Centrifugo v6 config ``data``.

    ``channel_fields``: the :class:`ChannelOptions` field names (taken from the class by default).
    Raises ``ValueError`` naming the first option that has no equivalent.
    """
    if channel_fields is None:
        import dataclasses

        from ..settings import ChannelOptions

        channel_fields = frozenset(f.name for f in dataclasses.fields(ChannelOptions))
    out: dict[str, Any] = {}
    admin_enabled = bool(_get(data, "admin.enabled"))
    engine_type = _get(data, "engine.type")
    for key, value in _leaves(data):
        if key == "admin.enabled" or key in ALWAYS_ON:
            continue
        if key == "channel.without_namespace" or key == "channel.namespaces":
            continue  # handled below
        if key.startswith(("channel.without_namespace.", "channel.namespaces.")):
            continue
        if key not in OPTIONS:
            raise ValueError(f"unsupported Centrifugo option {key!r}")
        target, convert = OPTIONS[key]
        if key == "admin.password" and not admin_enabled:
            continue
        if key == "engine.type" and value == "redis":
            continue  # the address says where
        if key == "engine.redis.address" and engine_type != "redis":
            continue
        try:
            _put(out, target, convert(value))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key}: {exc}") from None
    namespaces: dict[str, Any] = {}
    default = _get(data, "channel.without_namespace")
    if default is not None:
        namespaces[""] = _channel_options(default, "channel.without_namespace", channel_fields)
    listed = _get(data, "channel.namespaces") or []
    if not isinstance(listed, list):
        raise ValueError("channel.namespaces must be a list")
    for i, entry in enumerate(listed):
        where = f"channel.namespaces[{i}]"
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(f"{where}: each namespace needs a name")
        options = {k: v for k, v in entry.items() if k != "name"}
        namespaces[entry["name"]] = _channel_options(options, f"{where} ({entry['name']})", channel_fields)
    if namespaces:
        out["namespaces"] = namespaces
    if engine_type == "redis" and "broker" not in out:
        out["broker"] = "redis://127.0.0.1:6379"
    return out


_RENAMED_CHANNEL_OPTIONS = {"force_recovery_mode": "recovery_mode"}
"""Centrifugo channel options whose :class:`ChannelOptions` field has another name."""


def _channel_options(options: Any, where: str, fields: frozenset[str]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise ValueError(f"{where} must be an object")
    out: dict[str, Any] = {}
    for centrifugo_key, value in options.items():
        key = _RENAMED_CHANNEL_OPTIONS.get(centrifugo_key, centrifugo_key)
        if key not in fields:
            raise ValueError(f"unsupported Centrifugo channel option {where}.{key}")
        convert = duration if key.endswith("_ttl") else _same
        try:
            out[key] = convert(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}.{key}: {exc}") from None
    return out


def _leaves(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path not in ("channel.without_namespace",):
            found.extend(_leaves(value, f"{path}."))
        else:
            found.append((path, value))
    return found


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _put(out: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
