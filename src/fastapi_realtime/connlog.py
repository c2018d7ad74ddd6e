"""The log lines of a connection's life, on the ``fastapi_realtime.connections`` logger.

One line per event, never per message:

- ``connected``: DEBUG, once the connection says who it is (a protocol connect that
  succeeded; ``hub.connection(user=...)`` or ``conn.authenticate``);
- ``closed``: DEBUG, when a connection that got that far ends, saying who closed it;
- ``refused``: INFO, when a connection is turned away: refused before it became a session
  (3004 hub not running, 3001 hub closing, 3504 connection limits, 3013 connect rate), its
  connect refused by a reply (101 unauthorized, 109 token expired), or closed by the server
  before it connected (3500 invalid token, 3502 stale, 3504 per user, ...).

Each record carries the extras ``user``, ``client``, ``code`` and ``reason`` (and ``closed_by``:
``"client"`` or ``"server"`` on close lines, ``ip`` on refusals), which a formatter can print
as fields (the standalone server's JSON lines do). No token ever reaches these lines: the
reasons are the hub's own texts.
"""

from __future__ import annotations

import logging

from .session import Session

log = logging.getLogger("fastapi_realtime.connections")


def refused(
    code: int,
    reason: str,
    *,
    ip: str | None,
    user: str = "",
    client: str = "",
    why: str = "",
) -> None:
    """Log that a connection was turned away with ``code`` (a close code or a reply error);
    ``why``: what made the hub refuse it (the setting whose limit was hit, say)."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            "connection refused: code %d (%s%s), user %r, client %s, ip %s",
            code,
            reason,
            f": {why}" if why else "",
            user,
            client or "-",
            ip or "-",
            extra={"user": user, "client": client, "code": code, "reason": reason, "ip": ip or ""},
        )


def connected(session: Session) -> None:
    """Log that ``session`` is connected as ``session.user``."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "connected: user %r, client %s",
            session.user,
            session.id,
            extra={"user": session.user, "client": session.id},
        )


def closed(session: Session, ip: str | None) -> None:
    """Log the end of ``session``: a ``closed`` line once it had connected, a ``refused`` line
    when the server closed it before, a ``closed`` line when the client left before."""
    by = "server" if session.closed_by_server else "client"
    code, reason = session.close_code, session.close_reason
    if not session.authenticated and by == "server":
        refused(code, reason, ip=ip, user=session.user, client=session.id)
        return
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "closed by %s: code %d (%s), user %r, client %s",
            by,
            code,
            reason,
            session.user,
            session.id,
            extra={"user": session.user, "client": session.id, "code": code, "reason": reason, "closed_by": by},
        )
