"""Channel options the test apps share."""

from __future__ import annotations

from fastapi_realtime import ChannelOptions

CHAT = ChannelOptions(
    history_size=100, presence=True, join_leave=True, allow_publish_for_client=True, allow_publish_for_anonymous=True
)
"""A chat namespace: history, presence, join/leave, and every client (anonymous too) publishes."""

LOCKED = ChannelOptions(allow_subscribe_for_client=False, allow_subscribe_for_anonymous=False)
"""A namespace clients subscribe to only with a subscription token or an ``on_subscribe`` grant."""
