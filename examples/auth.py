"""An authenticated hand-written endpoint: ``JWTAuth`` as a FastAPI dependency.

- ``GET /token?user=ada``: mints an HS256 token for ``ada``, valid ``TOKEN_TTL`` seconds
  (default 3600). A demo convenience only: a real app mints tokens after its own login.
- ``WS /ws?token=...`` (or an ``Authorization: Bearer`` header): refused before it is
  accepted when the token is missing, invalid or expired (the client sees HTTP 403); once
  accepted, the server greets the user by id and echoes every text tagged with it::

    {"type": "welcome", "user": "ada"}
    {"type": "echo", "user": "ada", "text": "hi"}

The signing key is ``JWT_SECRET`` from the environment, or a random one per process::

    python -m examples.auth
    curl 'http://127.0.0.1:8000/token?user=ada'
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, Query, WebSocket

from fastapi_realtime import Credentials, Hub, JWTAuth

from ._serve import serve

SECRET = os.environ.get("JWT_SECRET") or secrets.token_urlsafe(32)
"""HS256 key. At least 32 bytes: PyJWT warns about shorter HMAC keys."""
TOKEN_TTL = int(os.environ.get("TOKEN_TTL", "3600"))
"""Seconds a minted token is valid."""

auth = JWTAuth(secret=SECRET)
hub = Hub()
app = FastAPI(title="fastapi-realtime auth", lifespan=hub.lifespan)


def mint_token(user: str, *, ttl: int = TOKEN_TTL, secret: str = SECRET) -> str:
    """A connection token for ``user`` (claims ``sub`` and ``exp``), signed with HS256."""
    return jwt.encode({"sub": user, "exp": int(time.time()) + ttl}, secret, algorithm="HS256")


@app.get("/token")
async def token(user: Annotated[str, Query(min_length=1, max_length=64)]) -> dict[str, str]:
    """A demo token for ``user``: ``{"token": "..."}``."""
    return {"token": mint_token(user)}


@app.websocket("/ws")
async def private_echo(websocket: WebSocket, creds: Annotated[Credentials, Depends(auth)]) -> None:
    """Greet the authenticated user, then echo each text back tagged with the user id."""
    async with hub.connection(websocket, user=creds.user, info=creds.info) as conn:
        await conn.send_json({"type": "welcome", "user": conn.user})
        async for text in conn.iter_text():
            await conn.send_json({"type": "echo", "user": conn.user, "text": text})


if __name__ == "__main__":
    serve(app)
