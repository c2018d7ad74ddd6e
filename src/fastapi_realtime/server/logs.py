"""The server's logging: plain text or one JSON object per line, with the client's id and user.

A log record made while a connection is being served (in its task, or a task it started)
carries ``client`` and ``user``: :func:`bind_session` puts the session in a context variable
when the hub opens it, and :class:`SessionContextFilter` reads it when the record is made.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import sys
from typing import Any

import orjson

from ..logredact import install_log_redaction
from ..session import Session

_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar("fastapi_realtime_session", default=None)


def bind_session(session: Session) -> None:
    """Tag the log records of the current task (and the tasks it starts) with ``session``."""
    _session.set(session)


class SessionContextFilter(logging.Filter):
    """Adds ``client`` and ``user`` (``""`` outside a connection) to every record that does not
    carry them already (the connection lines of :mod:`fastapi_realtime.connlog` do)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if hasattr(record, "client"):
            return True
        session = _session.get()
        record.client = session.id if session is not None else ""
        record.user = session.user if session is not None and session.authenticated else ""
        return True


FIELDS = ("client", "user", "code", "reason", "closed_by", "ip")
"""The record attributes a JSON line shows when set (the ``extra=`` of the library's lines)."""


class JSONFormatter(logging.Formatter):
    """One JSON object per record: ``time``, ``level``, ``logger``, ``message``, and ``client``,
    ``user``, ``code``, ``reason``, ``closed_by``, ``ip`` (see :mod:`fastapi_realtime.connlog`)
    and ``exc`` (a formatted traceback) when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, "")
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(log_format: str, level: str) -> None:
    """Log to stderr in ``log_format`` (``text`` or ``json``) at ``level``, uvicorn's loggers
    included, with tokens redacted from URLs. Replaces the root logger's handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SessionContextFilter())
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    install_log_redaction()
