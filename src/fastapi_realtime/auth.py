"""JWT authentication: connection and subscription tokens, and a FastAPI dependency.

Tokens carry the claims the Centrifuge ecosystem uses:

- connection token: ``sub`` (user id, may be ``""``), ``exp``, ``info`` (public info shown in
  presence and publications), ``channels`` and ``subs`` (server-side subscriptions), ``meta``
  (private data, only seen by hooks);
- subscription token: ``sub`` (must be the connection's user), ``channel``, ``exp``, ``info``.

HS256 with ``secret``, or RS256/ES256 with a ``public_key`` (PEM).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
import orjson
from fastapi import WebSocket, WebSocketDisconnect, WebSocketException, status

from .connection import Connection
from .hooks import Credentials, SubscriptionGrant
from .protocol.codes import DisconnectCode, ErrorCode
from .protocol.errors import Disconnect, ReplyError


class JWTAuth:
    """Verifies JWTs for the protocol endpoint, and is a FastAPI dependency for your own.

    As a dependency (``user: Credentials = Depends(auth)``) it reads the token from an
    ``Authorization: Bearer`` header, the cookie named ``cookie`` (when given), or the
    ``query_param`` query parameter (``token``; ``None`` turns it off), in that order, and
    refuses the WebSocket before it is accepted (close 1008, which the client sees as HTTP 403).
    Browsers cannot set headers on a WebSocket: prefer the cookie, or :meth:`first_message`
    (the token as the first message after accept). A token in the URL lands in access logs
    unless they are redacted (``fastapi_realtime.install_log_redaction()``).
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        algorithms: Sequence[str] | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        cookie: str | None = None,
        query_param: str | None = "token",
    ) -> None:
        if (secret is None) == (public_key is None):
            raise ValueError("give exactly one of secret (HS256) or public_key (RS256/ES256)")
        self._key: str = secret if secret is not None else str(public_key)
        self.algorithms = list(algorithms or (["HS256"] if secret is not None else ["RS256", "ES256"]))
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.cookie = cookie
        self.query_param = query_param

    def decode(self, token: str) -> dict[str, Any]:
        """Verify ``token`` and return its claims.

        Raises :class:`ReplyError` 109 when it expired, :class:`Disconnect` 3500 when it is invalid.
        """
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise ReplyError(ErrorCode.TOKEN_EXPIRED) from None
        except jwt.InvalidTokenError as exc:
            raise Disconnect(DisconnectCode.INVALID_TOKEN, f"invalid token: {exc}"[:100]) from None
        if not isinstance(claims.get("sub", ""), str):
            raise Disconnect(DisconnectCode.INVALID_TOKEN, "invalid token: sub must be a string")
        return claims

    def connection(self, token: str) -> Credentials:
        claims = self.decode(token)
        channels = list(claims.get("channels") or [])
        subs = claims.get("subs") or {}
        if not isinstance(subs, Mapping) or not all(isinstance(c, str) for c in channels):
            raise Disconnect(DisconnectCode.INVALID_TOKEN, "invalid token: bad channels or subs claim")
        return Credentials(
            user=claims.get("sub", ""),
            info=claims.get("info"),
            expire_at=int(claims.get("exp") or 0),
            channels=channels + [c for c in subs if c not in channels],
            meta=claims.get("meta"),
        )

    def subscription(self, token: str, channel: str, user: str) -> SubscriptionGrant:
        claims = self.decode(token)
        if claims.get("channel") != channel or claims.get("sub", "") != user:
            raise ReplyError(ErrorCode.PERMISSION_DENIED, "token is for another channel or user")
        return SubscriptionGrant(info=claims.get("info"), expire_at=int(claims.get("exp") or 0))

    def token_of(self, websocket: WebSocket) -> str:
        """The token of a handshake: header, then cookie, then query parameter (``""``: none)."""
        header = websocket.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and header[7:].strip():
            return header[7:].strip()
        if self.cookie and websocket.cookies.get(self.cookie):
            return websocket.cookies[self.cookie]
        return websocket.query_params.get(self.query_param, "") if self.query_param else ""

    async def __call__(self, websocket: WebSocket) -> Credentials:
        token = self.token_of(websocket)
        if not token:
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, "token required")
        try:
            return self.connection(token)
        except (ReplyError, Disconnect) as exc:
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, str(exc)[:120]) from None

    async def first_message(self, conn: Connection, *, within: float = 10.0) -> Credentials:
        """Authenticate an accepted tutorial-API connection by its first message: the token
        itself, or JSON ``{"token": "..."}``. Sets the connection's user (and closes it with
        3005 when the token expires). No token within ``within`` seconds, or a bad one: close
        1008 and ``WebSocketDisconnect``, which ends the ``async with hub.connection()`` block
        quietly::

            async with hub.connection(websocket) as conn:
                creds = await auth.first_message(conn)
        """
        try:
            async with asyncio.timeout(within):
                text = await conn.receive_text()
            token = _token_in(text)
            creds = self.connection(token)
        except (TimeoutError, ReplyError, Disconnect) as exc:
            reason = "token required" if isinstance(exc, TimeoutError) else str(exc)[:120]
            conn.close(status.WS_1008_POLICY_VIOLATION, reason)
            raise WebSocketDisconnect(status.WS_1008_POLICY_VIOLATION, reason) from None
        conn.authenticate(creds.user, creds.info, expire_at=creds.expire_at)
        return creds


def _token_in(text: str) -> str:
    if not text.startswith("{"):
        return text.strip()
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise Disconnect(DisconnectCode.INVALID_TOKEN, "invalid JSON") from None
    token = value.get("token") if isinstance(value, dict) else None
    if not isinstance(token, str):
        raise Disconnect(DisconnectCode.INVALID_TOKEN, "token must be a string")
    return token
