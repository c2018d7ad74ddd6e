"""JWT authentication: connection and subscription tokens, and a FastAPI dependency.

Tokens carry the claims the Centrifuge ecosystem uses:

- connection token: ``sub`` (user id, may be ``""``), ``exp``, ``info`` (public info shown in
  presence and publications), ``channels`` and ``subs`` (server-side subscriptions), ``meta``
  (private data, only seen by hooks);
- subscription token: ``sub`` (must be the connection's user), ``channel``, ``exp``, ``info``.

HS256 with ``secret``, or RS256/ES256 with a ``public_key`` (PEM).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from fastapi import WebSocket, WebSocketException, status

from .hooks import Credentials, SubscriptionGrant
from .protocol.codes import DisconnectCode, ErrorCode
from .protocol.errors import Disconnect, ReplyError


class JWTAuth:
    """Verifies JWTs for the protocol endpoint, and is a FastAPI dependency for your own.

    As a dependency (``user: Credentials = Depends(auth)``) it reads the token from the
    ``token`` query parameter or an ``Authorization: Bearer`` header and refuses the WebSocket
    before it is accepted (close 1008, which the client sees as HTTP 403).
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
    ) -> None:
        if (secret is None) == (public_key is None):
            raise ValueError("give exactly one of secret (HS256) or public_key (RS256/ES256)")
        self._key: str = secret if secret is not None else str(public_key)
        self.algorithms = list(algorithms or (["HS256"] if secret is not None else ["RS256", "ES256"]))
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway

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

    async def __call__(self, websocket: WebSocket) -> Credentials:
        token = websocket.query_params.get("token")
        header = websocket.headers.get("authorization", "")
        if not token and header.lower().startswith("bearer "):
            token = header[7:].strip()
        if not token:
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, "token required")
        try:
            return self.connection(token)
        except (ReplyError, Disconnect) as exc:
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, str(exc)[:120]) from None
