"""Every exception fastapi-realtime raises on purpose.

::

    RealtimeError
     ├── ReplyError             fails one client command with an ErrorCode; raise it from hooks
     ├── Disconnect             ends a connection with a close code; raise it from hooks
     └── HubError               server code used the hub in a way that cannot work; the
          │                     message says what to change
          ├── HubNotRunning       the hub was never started (no lifespan) or is closed
          └── FeatureNotEnabled   the channel's namespace keeps no history / no presence

``ReplyError`` and ``Disconnect`` travel to clients (see :mod:`.protocol.errors`); the
``HubError`` family stays in server code: a client asking for a missing feature gets the
protocol's error 108 instead.
"""

from __future__ import annotations

from .protocol.errors import Disconnect, RealtimeError, ReplyError

__all__ = ["Disconnect", "FeatureNotEnabled", "HubError", "HubNotRunning", "RealtimeError", "ReplyError"]

NOT_STARTED = (
    "the hub is not running: start it with FastAPI(lifespan=hub.lifespan), or `async with hub:` inside your"
    " own lifespan; with TestClient, use `with TestClient(app) as client:` so that the lifespan runs"
)


class HubError(RealtimeError):
    """Base of the errors of server code calling the hub."""


class HubNotRunning(HubError, RuntimeError):
    """The hub is not started (its lifespan did not run) or is already closed."""

    def __init__(self, message: str = NOT_STARTED) -> None:
        super().__init__(message)


class FeatureNotEnabled(HubError, LookupError):
    """The channel's namespace does not keep what was asked for (history, presence)."""
