"""The ``fastapi-realtime`` command (also ``python -m fastapi_realtime``).

- ``serve``: run the server (config file, environment, flags; see :mod:`.config`);
- ``token``: mint a connection token for development, with the config's HMAC secret;
- ``check-config FILE``: validate a config and print what the server would run with, secrets redacted;
- ``version``.

Exit status: 0, or 2 with one line on stderr for a bad config or bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._version import __version__

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastapi-realtime", description="A real-time server (Centrifuge protocol).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server")
    _config_options(serve)
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (more than one needs a Redis broker)")
    serve.add_argument("--broker", help="'memory' (default) or a Redis URL")
    serve.add_argument("--api-key", help="key of the HTTP server API")
    serve.add_argument("--admin-password", help="password of the admin page at /admin")
    serve.add_argument("--hmac-secret", help="HS256 secret of connection tokens")
    serve.add_argument("--allowed-origin", action="append", dest="allowed_origins", help="allowed browser origin")
    serve.add_argument("--log-format", choices=["text", "json"])
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--demo", action="store_true", default=None, help="mount the demo pages")

    token = commands.add_parser("token", help="mint a connection token for development")
    _config_options(token)
    token.add_argument("--user", required=True, help="the token's sub claim")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (0: never; default 3600)")
    token.add_argument("--channels", nargs="*", default=[], help="server-side subscriptions (channels claim)")
    token.add_argument("--info", help="the info claim, as JSON")

    check = commands.add_parser("check-config", help="validate a config file and print what it runs with")
    check.add_argument("file", type=Path)
    check.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for serve")

    commands.add_parser("version", help="print the version")
    return parser


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", type=Path, help="config file: .toml, or a Centrifugo v6 .json/.yaml")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, dotted (limits.max_connections=5000); VALUE is JSON or a plain string",
    )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config values given as flags (``--set`` first, then the named flags)."""
    out: dict[str, Any] = {}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    named = {
        "host": "host",
        "port": "port",
        "workers": "workers",
        "broker": "broker",
        "api_key": "api_key",
        "admin_password": "admin_password",
        "allowed_origins": "allowed_origins",
        "log_format": "log_format",
        "log_level": "log_level",
        "demo": "demo",
    }
    for attr, key in named.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = value
    if getattr(args, "hmac_secret", None) is not None:
        out.setdefault("token", {})["hmac_secret"] = args.hmac_secret
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"fastapi-realtime {__version__}")
        return 0
    try:
        from .config import ConfigError, load_config
    except ImportError as exc:
        print(f'fastapi-realtime: {exc.name} is missing: pip install "fastapi-realtime[server]"', file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(getattr(args, "config", None) or getattr(args, "file", None), _overrides(args))
    except (ConfigError, ValueError) as exc:
        print(f"fastapi-realtime: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "check-config":
        print(json.dumps(config.redacted(), indent=2, sort_keys=True))
        return 0
    if args.command == "token":
        return _token(config, args)
    from .run import serve

    try:
        return serve(config)
    except ConfigError as exc:  # found while building the app, e.g. what --demo needs
        print(f"fastapi-realtime: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _token(config: Any, args: argparse.Namespace) -> int:
    import jwt

    secret = config.token.hmac_secret
    if secret is None:
        print(
            "fastapi-realtime: token needs token.hmac_secret in the config (a public key cannot sign)", file=sys.stderr
        )
        return EXIT_USAGE
    claims: dict[str, Any] = {"sub": args.user}
    if args.ttl:
        claims["exp"] = int(time.time()) + args.ttl
    if args.channels:
        claims["channels"] = args.channels
    if args.info is not None:
        try:
            claims["info"] = json.loads(args.info)
        except ValueError:
            print("fastapi-realtime: --info must be JSON", file=sys.stderr)
            return EXIT_USAGE
    for key in ("audience", "issuer"):
        value = getattr(config.token, key)
        if value is not None:
            claims["aud" if key == "audience" else "iss"] = value
    print(jwt.encode(claims, secret.get_secret_value(), algorithm="HS256"))
    return 0
