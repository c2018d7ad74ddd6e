"""The standalone server's configuration: one typed :class:`ServerConfig`.

Sources, lowest priority first: the defaults, a config file (TOML in this server's own
format, or a Centrifugo v6 JSON/YAML file, see :mod:`.centrifugo`), environment variables
``FASTAPI_REALTIME_<KEY>`` (nested keys joined with ``__``, e.g.
``FASTAPI_REALTIME_LIMITS__MAX_CONNECTIONS``; lists and tables as JSON) and command-line flags.
An unknown key in any of them is an error that names it (:class:`ConfigError`).

The ``limits`` table takes every :class:`~fastapi_realtime.HubSettings` field and each
``namespaces`` entry every :class:`~fastapi_realtime.ChannelOptions` field, by their names:
both models are derived from those dataclasses, so a new field is configurable at once.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, create_model, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from ..auth import JWTAuth
from ..brokers.base import Broker
from ..brokers.memory import MemoryBroker
from ..settings import ChannelOptions, HubSettings
from . import centrifugo

ENV_PREFIX = "FASTAPI_REALTIME_"
SERVER_ONLY = ("namespaces", "allowed_origins")
"""HubSettings fields the config sets at its top level rather than under ``limits``."""


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the offending key."""


def _model_of(cls: type[Any], name: str, exclude: tuple[str, ...] = ()) -> type[BaseModel]:
    """A pydantic model with the fields (types and defaults) of dataclass ``cls``; extra keys forbidden."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], f.default) for f in dataclasses.fields(cls) if f.name not in exclude
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


if TYPE_CHECKING:
    LimitsConfig = BaseModel
    NamespaceConfig = BaseModel
else:
    LimitsConfig = _model_of(HubSettings, "LimitsConfig", SERVER_ONLY)
    NamespaceConfig = _model_of(ChannelOptions, "NamespaceConfig")


class TokenConfig(BaseModel):
    """How connection and subscription tokens (JWT) are verified: one of the two keys."""

    model_config = ConfigDict(extra="forbid")

    hmac_secret: SecretStr | None = None
    """HS256 secret."""
    public_key: str | None = None
    """RSA or ECDSA public key, PEM (RS256/ES256)."""
    audience: str | None = None
    """Required ``aud`` claim, when set."""
    issuer: str | None = None
    """Required ``iss`` claim, when set."""


class RedisConfig(BaseModel):
    """Options of the Redis broker (used when ``broker`` is a Redis URL)."""

    model_config = ConfigDict(extra="forbid")

    cluster: bool = False
    """The URL names one node of a Redis Cluster."""
    prefix: str = "fastapi_realtime"
    """Prefix of every key and Pub/Sub channel the broker uses."""
    timeout: Annotated[float, Field(gt=0)] = 5.0
    """Seconds a Redis command may take before the broker counts Redis as unavailable."""


class _FileSource(PydanticBaseSettingsSource):
    """The config file's values (already in this server's own format), below the environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_file_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get() or {})


class _EnvSource(EnvSettingsSource):
    """The environment given to :func:`load_config` (``os.environ`` by default)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        environ = _environ.get()
        if environ is None:
            return super()._load_env_vars()
        return parse_env_vars(environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


_file_values: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("file_values", default=None)
_environ: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("environ", default=None)


class ServerConfig(BaseSettings):
    """Everything ``fastapi-realtime serve`` runs with. See the README's "Standalone server"."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid")

    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    """TCP port to listen on."""
    workers: Annotated[int, Field(ge=1)] = 1
    """Worker processes; more than one needs a Redis broker."""
    broker: str = "memory"
    """``memory`` (one process) or a Redis URL (``redis://``, ``rediss://``)."""
    redis: RedisConfig = RedisConfig()
    token: TokenConfig = TokenConfig()
    api_key: SecretStr | None = None
    """Key of the HTTP server API (``/api``, header ``X-API-Key``); no API without it."""
    admin_password: SecretStr | None = None
    """Password of the admin page (``/admin``); no admin page without it."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Browser origins allowed besides the same origin (see ``HubSettings.allowed_origins``)."""
    namespaces: dict[str, NamespaceConfig] = Field(default_factory=dict)
    """Namespace name -> its channel options; ``""`` is channels without a namespace."""
    limits: LimitsConfig = LimitsConfig()
    """Every other ``HubSettings`` field."""
    uni_websocket: bool = False
    """Also serve the unidirectional WebSocket at ``/connection/uni_websocket``."""
    metrics: bool = True
    """Serve Prometheus metrics at ``/metrics``."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line, with user and client id where known."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    demo: bool = False
    """Mount the demo pages (``fastapi_realtime.server.demo``)."""

    @field_validator("broker")
    @classmethod
    def _broker_kind(cls, value: str) -> str:
        if value != "memory" and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be 'memory' or a Redis URL (redis://, rediss://, unix://)")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvSource(settings_cls), _FileSource(settings_cls)

    # -- what the config builds --------------------------------------------------------

    def hub_settings(self) -> HubSettings:
        """The :class:`HubSettings` this config describes."""
        namespaces = {name: ChannelOptions(**opts.model_dump()) for name, opts in self.namespaces.items()}
        namespaces.setdefault("", ChannelOptions())
        return HubSettings(
            namespaces=namespaces, allowed_origins=tuple(self.allowed_origins), **self.limits.model_dump()
        )

    def auth(self) -> JWTAuth | None:
        """The token verifier, or ``None`` when no key is configured."""
        token = self.token
        if token.hmac_secret is None and token.public_key is None:
            return None
        return JWTAuth(
            secret=token.hmac_secret.get_secret_value() if token.hmac_secret is not None else None,
            public_key=token.public_key,
            audience=token.audience,
            issuer=token.issuer,
        )

    def make_broker(self) -> Broker:
        """A new broker for one hub: memory, or Redis (needs the ``redis`` package)."""
        if self.broker == "memory":
            return MemoryBroker()
        from ..brokers.redis import RedisBroker

        return RedisBroker(
            self.broker, cluster=self.redis.cluster, prefix=self.redis.prefix, timeout=self.redis.timeout
        )

    def redacted(self) -> dict[str, Any]:
        """The config as plain data, secrets replaced by ``**********`` (for ``check-config``)."""
        data = self.model_dump(mode="json")
        if self.broker != "memory":
            data["broker"] = _redact_url(self.broker)
        return data

    def revealed(self) -> dict[str, Any]:
        """The config as plain data, secrets included (handed to worker processes)."""
        revealed: dict[str, Any] = _reveal(self.model_dump(mode="python"))
        return revealed


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v) for v in value]
    return value


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    return f"{scheme}{sep}{'**********' if credentials else ''}@{host}"


# -- loading --------------------------------------------------------------------------


def read_file(path: Path) -> dict[str, Any]:
    """The values of a config file in this server's own format.

    ``.toml``: this server's format. ``.json``, ``.yaml``, ``.yml``: a Centrifugo v6 config,
    translated (an option without an equivalent here is an error naming it).
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            import json

            data = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"{path}: unknown config format {suffix!r} (use .toml, or a Centrifugo .json/.yaml)")
    except (tomllib.TOMLDecodeError, ValueError, yaml.YAMLError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be an object")
    try:
        return centrifugo.translate(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_config(
    file: Path | None = None, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> ServerConfig:
    """Load and check a :class:`ServerConfig`: ``file`` < ``environ`` (default ``os.environ``)
    < ``overrides`` (flags). Raises :class:`ConfigError` naming the key at fault."""
    environ = os.environ if environ is None else environ
    unknown = [name for name in environ if name.upper().startswith(ENV_PREFIX) and not _known_env(name)]
    if unknown:
        raise ConfigError(f"unknown environment variable {unknown[0]}")
    values = read_file(file) if file is not None else {}
    file_token, env_token = _file_values.set(values), _environ.set(environ)
    try:
        config = ServerConfig(**dict(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
    finally:
        _file_values.reset(file_token)
        _environ.reset(env_token)
    try:
        config.hub_settings()
        config.auth()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config.workers > 1 and config.broker == "memory":
        raise ConfigError(
            f"workers = {config.workers} needs a Redis broker: with the memory broker each worker "
            "would be a separate hub (set broker to a redis:// URL)"
        )
    return config


def describe(exc: ValidationError) -> str:
    """One line per problem, each naming its key."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}")
        else:
            lines.append(f"{key}: {error['msg']}")
    return "\n".join(lines)


def _known_env(name: str) -> bool:
    """Whether environment variable ``name`` names a key of :class:`ServerConfig`."""
    parts = name[len(ENV_PREFIX) :].lower().split("__")
    model: type[BaseModel] | None = ServerConfig
    for part in parts:
        if model is None:
            return True  # inside a free-form table (a namespace name)
        field = model.model_fields.get(part)
        if field is None:
            return False
        model = _nested_model(field.annotation)
    return True


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None
