"""Is the ASGI server in front of the hub as strict as the hub? Read from a live connection.

The hub's ``client_max_frame_bytes`` only helps if the server refuses a larger frame while
reading it: uvicorn reads a whole message (up to its ``ws_max_size``, 16 MiB by default) and
inflates compressed ones (``ws_per_message_deflate``, on by default) before the app sees it.
Under uvicorn, the ASGI ``receive`` callable of a WebSocket is a method of uvicorn's protocol
instance, which holds the server's ``Config``: that is where the limits are read. Under any
other server (or when a middleware wraps ``receive``), nothing is known and nothing is said.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from .settings import HubSettings


def server_config(receive: Any) -> Any | None:
    """The ``uvicorn.Config`` behind an ASGI ``receive`` callable, or ``None``."""
    config = getattr(getattr(receive, "__self__", None), "config", None)
    return config if isinstance(config, uvicorn.Config) else None


def looser_server_limits(receive: Any, settings: HubSettings) -> str:
    """What the server behind ``receive`` lets through that the hub would refuse (``""``: nothing,
    or nothing known), with the uvicorn flags that fix it."""
    config = server_config(receive)
    if config is None:
        return ""
    problems = []
    max_size = getattr(config, "ws_max_size", None)
    if isinstance(max_size, int) and max_size > settings.client_max_frame_bytes:
        problems.append(
            f"ws_max_size is {max_size} bytes, client_max_frame_bytes {settings.client_max_frame_bytes}: "
            f"large frames are read whole before the hub refuses them (--ws-max-size "
            f"{settings.client_max_frame_bytes})"
        )
    if getattr(config, "ws_per_message_deflate", False):
        problems.append(
            "permessage-deflate is on: compressed frames are inflated before any limit applies "
            "(--ws-per-message-deflate false)"
        )
    return "; ".join(problems)
