"""Channel names: validation and namespace lookup. Pure.

Grammar: ``[$][namespace:]name[#user,user...]``

- ``$`` marks a private channel: subscribing needs a subscription token or an ``on_subscribe``
  hook that allows it.
- ``namespace:`` picks the :class:`~.settings.ChannelOptions`; no colon means namespace ``""``.
- ``#42,43`` limits the channel to users 42 and 43 (others get 103 permission denied).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .protocol.codes import ErrorCode
from .protocol.errors import ReplyError
from .settings import ChannelOptions, HubSettings

PRIVATE_PREFIX = "$"
NAMESPACE_SEPARATOR = ":"
USER_BOUNDARY = "#"
_ALLOWED = re.compile(r"[A-Za-z0-9_\-=@.,;:!+/$#*~]+")
ALLOWED_CHARACTERS = "letters, digits and _ - = @ . , ; : ! + / $ # * ~"


@dataclass(frozen=True, slots=True)
class Channel:
    """A validated channel name with what follows from it."""

    name: str
    namespace: str
    options: ChannelOptions
    private: bool
    users: frozenset[str] | None
    """Users allowed by a ``#`` suffix, or ``None`` when the channel is not user-limited."""

    def allows_user(self, user: str) -> bool:
        return self.users is None or user in self.users


def parse_channel(name: str, settings: HubSettings) -> Channel:
    """Validate ``name`` and resolve its namespace.

    Raises :class:`ReplyError` 107 for a malformed name and 102 for an unknown namespace.
    """
    if not name:
        raise ReplyError(ErrorCode.BAD_REQUEST, "channel required")
    if len(name) > settings.channel_max_length:
        raise ReplyError(ErrorCode.BAD_REQUEST, f"channel name longer than {settings.channel_max_length}")
    if not _ALLOWED.fullmatch(name):
        raise ReplyError(ErrorCode.BAD_REQUEST, f"channel name may only contain {ALLOWED_CHARACTERS}")
    private = name.startswith(PRIVATE_PREFIX)
    body = name[len(PRIVATE_PREFIX) :] if private else name
    namespace = body.split(NAMESPACE_SEPARATOR, 1)[0] if NAMESPACE_SEPARATOR in body else ""
    options = settings.namespaces.get(namespace)
    if options is None:
        raise ReplyError(ErrorCode.UNKNOWN_CHANNEL)
    users = None
    if USER_BOUNDARY in body:
        users = frozenset(u for u in body.rsplit(USER_BOUNDARY, 1)[1].split(",") if u)
    return Channel(name=name, namespace=namespace, options=options, private=private, users=users)
