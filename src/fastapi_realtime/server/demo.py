"""The demo pages: a chat and a live ticker on the official centrifuge-js SDK (``serve --demo``).

Mounted by the standalone server when ``demo`` is on, or on any FastAPI app with a :class:`Hub`
through :func:`install` and :func:`run_ticker`:

- ``GET /``: the chat (``demo_static/chat.html``): rooms (``chat:<room>``), nicknames, presence
  with join/leave, history shown on join, a visible connection state, and recovery of missed
  messages after a reconnect or a page reload (the page keeps its last position per room in
  ``sessionStorage`` and subscribes with ``since``).
- ``GET /ticker``: prices published to ``ticker:prices`` by a server-side task (:func:`run_ticker`).
- ``POST /demo/token`` ``{"user": "ada"}``: a connection token for that nickname, valid for
  ``token_ttl`` seconds. **Demo only**: it hands a token to whoever asks, for any name.
- ``GET /demo/static/...``: the pages' scripts and the vendored ``centrifuge.js`` (the browser
  build of the npm package ``centrifuge`` 5.8.0, MIT, its licence beside it), served locally.

The hub needs the namespaces in :data:`DEMO_NAMESPACES` (or ones at least as permissive);
:func:`check_namespaces` raises :class:`~.config.ConfigError` naming each missing key.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path
from typing import Any

import jwt
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..app import Hub
from ..settings import ChannelOptions
from .config import ConfigError, ServerConfig

STATIC = Path(__file__).parent / "demo_static"
CHAT_NAMESPACE = "chat"
TICKER_CHANNEL = "ticker:prices"
TICK_INTERVAL = 1.0
"""Seconds between two ticker publications."""
TOKEN_TTL = 600
"""Seconds a demo token is valid; the page fetches a new one when it expires (error 109)."""
NICKNAME_PATTERN = r"^[\w .@-]{1,32}$"

DEMO_NAMESPACES: dict[str, ChannelOptions] = {
    CHAT_NAMESPACE: ChannelOptions(
        history_size=100, history_ttl=3600, presence=True, join_leave=True, allow_publish_for_subscriber=True
    ),
    "ticker": ChannelOptions(history_size=20, history_ttl=300),
}
"""What the demo's channels need: chat rooms with history, presence, join/leave and client
publishing; the ticker with a short history (a reload shows the last prices at once)."""

_SYMBOLS = {"ACME": 120.0, "GLOBEX": 48.5, "INITECH": 12.25, "UMBRELLA": 310.0}


class TokenRequest(BaseModel):
    """The body of ``POST /demo/token``."""

    user: str = Field(pattern=NICKNAME_PATTERN, description="the nickname (1-32 letters, digits, ' .@-_')")


class TokenReply(BaseModel):
    """A demo connection token."""

    token: str
    expires_in: int


def check_namespaces(hub: Hub) -> None:
    """Raise :class:`ConfigError` naming each config key the hub's namespaces lack for the demo."""
    missing: list[str] = []
    for name, wanted in DEMO_NAMESPACES.items():
        have = hub.settings.namespaces.get(name)
        if have is None:
            missing.append(f"namespaces.{name}")
            continue
        for flag in (
            "presence",
            "join_leave",
            "allow_publish_for_subscriber",
            "allow_subscribe_for_client",
            "allow_history_for_subscriber",
        ):
            if getattr(wanted, flag) and not getattr(have, flag):
                missing.append(f"namespaces.{name}.{flag} = true")
        if not have.history_size:
            missing.append(f"namespaces.{name}.history_size > 0")
    if missing:
        raise ConfigError("the demo needs " + ", ".join(missing) + " (as in examples/demo.toml)")


def demo_router(*, token_secret: str, token_ttl: int = TOKEN_TTL, claims: dict[str, str] | None = None) -> APIRouter:
    """The demo's pages and its token endpoint: HS256 tokens signed with ``token_secret``,
    valid ``token_ttl`` seconds, carrying ``claims`` too (``aud``, ``iss`` when required)."""
    extra = dict(claims or {})
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def chat_page() -> FileResponse:
        return FileResponse(STATIC / "chat.html", media_type="text/html")

    @router.get("/ticker")
    async def ticker_page() -> FileResponse:
        return FileResponse(STATIC / "ticker.html", media_type="text/html")

    @router.post("/demo/token")
    async def token(body: TokenRequest) -> TokenReply:
        payload: dict[str, Any] = {**extra, "sub": body.user, "exp": int(time.time()) + token_ttl}
        return TokenReply(token=jwt.encode(payload, token_secret, algorithm="HS256"), expires_in=token_ttl)

    return router


def install(
    app: FastAPI, hub: Hub, *, token_secret: str, token_ttl: int = TOKEN_TTL, claims: dict[str, str] | None = None
) -> None:
    """Mount the demo pages, token endpoint and static files on ``app`` (not the ticker task)."""
    check_namespaces(hub)
    app.include_router(demo_router(token_secret=token_secret, token_ttl=token_ttl, claims=claims))
    app.mount("/demo/static", StaticFiles(directory=STATIC), name="demo-static")


async def run_ticker(hub: Hub, interval: float = TICK_INTERVAL) -> None:
    """Publish a random walk of a few prices to :data:`TICKER_CHANNEL` every ``interval`` s."""
    loop = asyncio.get_running_loop()
    prices = dict(_SYMBOLS)
    rng = random.Random()
    start = loop.time()
    for seq in itertools.count(1):
        changes = {s: round(p * rng.uniform(-0.01, 0.01), 2) for s, p in prices.items()}
        prices = {s: round(max(0.01, p + changes[s]), 2) for s, p in prices.items()}
        quotes = [{"symbol": s, "price": prices[s], "change": changes[s]} for s in prices]
        await hub.publish(TICKER_CHANNEL, {"seq": seq, "time": time.time(), "quotes": quotes})
        await asyncio.sleep(max(0.0, start + seq * interval - loop.time()))


def mount_demo(app: FastAPI, hub: Hub, config: ServerConfig) -> None:
    """The standalone server's hook: :func:`install` with the config's HMAC secret, and the
    ticker as one of the app's background tasks."""
    secret = config.token.hmac_secret
    if secret is None:
        raise ConfigError("the demo mints HS256 tokens for nicknames: set token.hmac_secret")
    claims = {"aud": config.token.audience, "iss": config.token.issuer}
    install(app, hub, token_secret=secret.get_secret_value(), claims={k: v for k, v in claims.items() if v})
    app.state.background.append(run_ticker)
