"""Keep tokens out of logs: a logging filter that redacts credentials in URLs.

Browsers cannot set headers on a WebSocket handshake, so tokens often travel in the query
string (``?token=...``, the unidirectional endpoint's ``?cf_connect={...}``), and uvicorn
writes the full URL of every request and WebSocket handshake to its logs. The filter rewrites
the value of each :data:`SENSITIVE_PARAMS` query parameter to ``[redacted]`` in a record's
message and arguments before any handler formats it.

One line for applications (``fastapi_realtime.run`` does it for you)::

    fastapi_realtime.install_log_redaction()
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

SENSITIVE_PARAMS = ("token", "cf_connect")
"""Query parameters whose values never reach a log line."""

REDACTED = "[redacted]"

_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn.asgi")
"""uvicorn's loggers that write URLs: the access log and the WebSocket handshake lines."""

_PARAM_VALUE = re.compile(
    r"(?P<key>(?:^|[?&;\s])(?:" + "|".join(map(re.escape, SENSITIVE_PARAMS)) + r")=)[^&;\s\"'#]*",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with the value of every sensitive query parameter replaced by ``[redacted]``."""
    return _PARAM_VALUE.sub(lambda m: m["key"] + REDACTED, text)


def _redact_arg(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Redacts sensitive query values in a record's message and string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        return True


def install_log_redaction(extra_loggers: Iterable[str] = ()) -> None:
    """Add the redacting filter to uvicorn's loggers, to every ``fastapi_realtime`` logger, and
    to ``extra_loggers`` (names). Idempotent. A logger's filters apply to what is logged on it,
    not to what its children propagate: name each logger that writes URLs."""
    names = [*_LOGGERS, *extra_loggers]
    names += [
        n for n in logging.root.manager.loggerDict if n == "fastapi_realtime" or n.startswith("fastapi_realtime.")
    ]
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
