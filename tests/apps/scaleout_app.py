"""``examples/scaleout.py`` as the multi-process tests run it: short intervals from the environment.

``REDIS_URL`` picks the broker (as in the example); ``PRESENCE_TTL``, ``PRESENCE_REFRESH``,
``POSITION_CHECK_INTERVAL`` and ``POSITION_CHECK_GRACE`` (seconds) shorten the hub's timers,
``REDIS_TIMEOUT``, ``REDIS_PING_INTERVAL`` and ``REDIS_BACKOFF_MAX`` (seconds) the broker's.
The ``whoami`` RPC answers with the process id, so a test knows which worker a connection
landed on. The library's log lines go to stderr from INFO up, one line each, as an app that
wants to see the broker recover would configure it.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from examples.scaleout import NAMESPACES, create_app
from fastapi_realtime import Broker, HubSettings, MemoryBroker, RPCContext
from fastapi_realtime.brokers.redis import RedisBroker


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


_handler = logging.StreamHandler(sys.stderr)
_handler.setFormatter(logging.Formatter("%(message)s"))
logging.getLogger("fastapi_realtime").addHandler(_handler)
logging.getLogger("fastapi_realtime").setLevel(logging.INFO)


settings = HubSettings(
    namespaces=NAMESPACES,
    allow_anonymous=True,
    presence_ttl=_seconds("PRESENCE_TTL", 60.0),
    presence_refresh_interval=_seconds("PRESENCE_REFRESH", 25.0),
    position_check_interval=_seconds("POSITION_CHECK_INTERVAL", 10.0),
    position_check_grace=_seconds("POSITION_CHECK_GRACE", 1.0),
    shutdown_timeout=2.0,
)


def _broker() -> Broker:
    url = os.environ.get("REDIS_URL")
    if not url:
        return MemoryBroker()
    return RedisBroker(
        url,
        timeout=_seconds("REDIS_TIMEOUT", 5.0),
        ping_interval=_seconds("REDIS_PING_INTERVAL", 10.0),
        backoff_max=_seconds("REDIS_BACKOFF_MAX", 5.0),
    )


app, hub = create_app(settings, _broker())


@hub.rpc("whoami")
async def whoami(ctx: RPCContext, data: Any) -> dict[str, Any]:
    return {"pid": os.getpid()}
