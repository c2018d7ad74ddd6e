"""Who may do what in a channel: the client-side permission model. Pure.

The server API (``Hub.publish``, ``Hub.history``, ...) is never checked: the application
decides before it calls. A client is checked on every command, by these rules:

- **Reading is the base right.** A client may subscribe with a subscription token or an
  ``on_subscribe`` grant (the documented ways to grant), or else when the namespace's
  ``allow_subscribe_for_client`` (``allow_subscribe_for_anonymous`` for a connection without
  a user) says so, never for a ``$`` channel.
- **Everything else needs reading, unless an option says otherwise.** Publish, history and
  presence each have three options, as in Centrifugo: ``_for_subscriber`` (clients
  subscribed to the channel), ``_for_client`` (any client, subscribed or not) and
  ``_for_anonymous`` (lets those two cover connections without a user). A ``$`` channel has
  no right to read without its token or grant, so there ``_for_client`` covers only
  subscribers.
- Join/leave events need the presence right (a subscribe asking for them without it gets
  none).
- **A ``#`` list is absolute:** ``chat:dm#42,43`` is for users 42 and 43 only, whatever a
  token, a hook or an option says.
- ``HubSettings.insecure`` (development only) allows everything.

Hooks refine, they do not replace: ``on_publish`` runs only after the check passed (it may
refuse or rewrite), and ``on_subscribe`` may grant (its documented job) or refuse, but not
reach a channel of another user's ``#`` list.
"""

from __future__ import annotations

from enum import Enum

from .channels import Channel
from .settings import ChannelOptions


class Action(Enum):
    """What a client asks for beside subscribing (``presence_stats`` counts as presence)."""

    PUBLISH = "publish"
    HISTORY = "history"
    PRESENCE = "presence"


def may_subscribe(channel: Channel, user: str, *, granted: bool, insecure: bool = False) -> bool:
    """Whether ``user`` (``""``: anonymous) may subscribe; ``granted``: it holds a valid
    subscription token or an ``on_subscribe`` grant."""
    if insecure:
        return True
    if not channel.allows_user(user):
        return False
    if granted:
        return True
    options = channel.options
    return (
        not channel.private
        and options.allow_subscribe_for_client
        and (bool(user) or options.allow_subscribe_for_anonymous)
    )


def _rule(o: ChannelOptions, action: Action) -> tuple[bool, bool, bool]:
    """``(for_subscriber, for_client, for_anonymous)`` of ``action`` in options ``o``."""
    if action is Action.PUBLISH:
        return o.allow_publish_for_subscriber, o.allow_publish_for_client, o.allow_publish_for_anonymous
    if action is Action.HISTORY:
        return o.allow_history_for_subscriber, o.allow_history_for_client, o.allow_history_for_anonymous
    return o.allow_presence_for_subscriber, o.allow_presence_for_client, o.allow_presence_for_anonymous


def may(action: Action, channel: Channel, user: str, *, subscribed: bool, insecure: bool = False) -> bool:
    """Whether ``user`` (``""``: anonymous), subscribed to ``channel`` or not, may ``action`` there."""
    if insecure:
        return True
    if not channel.allows_user(user):
        return False
    for_subscriber, for_client, for_anonymous = _rule(channel.options, action)
    if not user and not for_anonymous:
        return False
    if subscribed:
        return for_subscriber or for_client
    return for_client and not channel.private
