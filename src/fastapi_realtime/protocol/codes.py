"""Error, unsubscribe and disconnect codes of the Centrifuge client protocol.

Three tables, each an ``IntEnum`` whose members know their wire message:

- :class:`ErrorCode` travels in ``Reply.error`` and fails one command; the connection stays open.
- :class:`UnsubscribeCode` travels in an ``unsubscribe`` push and ends one subscription.
- :class:`DisconnectCode` is the WebSocket close code (or a ``disconnect`` push on streaming
  transports) and ends the connection.

Whether a client reconnects after a disconnect follows from the code's range alone
(see :attr:`DisconnectCode.reconnect`); the SDKs apply the same rule.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Codes of ``Reply.error``. 0-399 belong to the protocol; applications use 400-1999."""

    INTERNAL = 100
    UNAUTHORIZED = 101
    UNKNOWN_CHANNEL = 102
    PERMISSION_DENIED = 103
    METHOD_NOT_FOUND = 104
    ALREADY_SUBSCRIBED = 105
    LIMIT_EXCEEDED = 106
    BAD_REQUEST = 107
    NOT_AVAILABLE = 108
    TOKEN_EXPIRED = 109
    EXPIRED = 110
    TOO_MANY_REQUESTS = 111
    UNRECOVERABLE_POSITION = 112

    @property
    def message(self) -> str:
        """The message the protocol pairs with the code."""
        return self.name.lower().replace("_", " ")

    @property
    def temporary(self) -> bool:
        """Whether a client should retry the command (the SDKs do, with backoff)."""
        return self in (ErrorCode.INTERNAL, ErrorCode.TOO_MANY_REQUESTS)


class UnsubscribeCode(IntEnum):
    """Codes of the ``unsubscribe`` push. Codes >= 2500 make the client resubscribe."""

    SERVER = 2000
    INSUFFICIENT_STATE = 2500
    EXPIRED = 2501

    @property
    def reason(self) -> str:
        return {2000: "server unsubscribe", 2500: "insufficient state", 2501: "subscription expired"}[self]


class DisconnectCode(IntEnum):
    """WebSocket close codes the server uses.

    ======  =====================  =========
    code    reason                 reconnect
    ======  =====================  =========
    3001    shutdown               yes
    3004    internal server error  yes
    3005    connection expired     yes
    3006    subscription expired   yes
    3008    slow                   yes
    3009    write error            yes
    3010    insufficient state     yes
    3011    force reconnect        yes
    3012    no pong                yes
    3013    too many requests      yes
    3500    invalid token          no
    3501    bad request            no
    3502    stale                  no
    3503    force disconnect       no
    3504    connection limit       no
    3505    channel limit          no
    3506    inappropriate protocol no
    3507    permission denied      no
    3508    not available          no
    3509    too many errors        no
    1009    message too big        no
    ======  =====================  =========

    1009 is the WebSocket code for an incoming frame over ``HubSettings.client_max_frame_bytes``;
    the SDKs do not reconnect after it.
    """

    SHUTDOWN = 3001
    INTERNAL = 3004
    EXPIRED = 3005
    SUBSCRIPTION_EXPIRED = 3006
    SLOW = 3008
    WRITE_ERROR = 3009
    INSUFFICIENT_STATE = 3010
    FORCE_RECONNECT = 3011
    NO_PONG = 3012
    TOO_MANY_REQUESTS = 3013
    INVALID_TOKEN = 3500
    BAD_REQUEST = 3501
    STALE = 3502
    FORCE_DISCONNECT = 3503
    CONNECTION_LIMIT = 3504
    CHANNEL_LIMIT = 3505
    INAPPROPRIATE_PROTOCOL = 3506
    PERMISSION_DENIED = 3507
    NOT_AVAILABLE = 3508
    TOO_MANY_ERRORS = 3509
    MESSAGE_TOO_BIG = 1009

    @property
    def reason(self) -> str:
        """Short reason for the close frame (always under the 123-byte limit)."""
        special = {DisconnectCode.INTERNAL: "internal server error", DisconnectCode.EXPIRED: "connection expired"}
        return special.get(self, self.name.lower().replace("_", " "))

    @property
    def reconnect(self) -> bool:
        """Whether clients reconnect after this code: 3000-3499 yes, 3500-3999 no."""
        return reconnect_allowed(self.value)


def reconnect_allowed(code: int) -> bool:
    """The SDKs' rule for any close code: no reconnect for 1009, 3500-3999 and 4500-4999."""
    return not (code == 1009 or 3500 <= code < 4000 or 4500 <= code < 5000)
