"""Exceptions that carry a protocol code.

::

    RealtimeError
     ├── ReplyError       fails one command with an ErrorCode; the connection stays open
     └── Disconnect       ends the connection with a DisconnectCode (or an application 4000-4999 code)
"""

from __future__ import annotations

from .codes import DisconnectCode, ErrorCode


class RealtimeError(Exception):
    """Base of every exception fastapi-realtime raises on purpose."""


class ReplyError(RealtimeError):
    """Fail the current command with an error reply.

    Raise it from a hook to refuse a connect, subscribe, publish or RPC. ``code`` is an
    :class:`ErrorCode` or an application code in 400-1999.
    """

    def __init__(self, code: int, message: str | None = None, *, temporary: bool | None = None) -> None:
        known = ErrorCode(code) if code in ErrorCode._value2member_map_ else None
        self.code = int(code)
        self.message = message if message is not None else (known.message if known else "error")
        self.temporary = temporary if temporary is not None else bool(known and known.temporary)
        super().__init__(f"{self.code}: {self.message}")


class Disconnect(RealtimeError):
    """Close the connection with ``code`` and ``reason``.

    Raise it from a hook to drop the client; applications may use codes 4000-4999
    (4500-4999 tell clients not to reconnect).
    """

    def __init__(self, code: int, reason: str | None = None) -> None:
        known = DisconnectCode(code) if code in DisconnectCode._value2member_map_ else None
        self.code = int(code)
        self.reason = reason if reason is not None else (known.reason if known else "disconnect")
        super().__init__(f"{self.code}: {self.reason}")
