"""Publish from another service over HTTP: the Centrifugo-compatible server API.

- ``WS /connection/websocket``: the Centrifuge-protocol endpoint (any SDK; anonymous
  connections are allowed here, to keep the demo short).
- ``POST /api/<method>``: the server API (``publish``, ``broadcast``, ``history``, ``batch``, ...),
  protected by ``API_KEY`` from the environment (a random one per process if unset, printed at
  startup). Channels in ``news:`` keep their last 100 publications; ``chat:`` ones also track
  presence.

::

    API_KEY=secret python -m examples.http_api
    curl -H 'X-API-Key: secret' -d '{"channel": "news:lobby", "data": {"text": "hi"}}' \\
        http://127.0.0.1:8000/api/publish
    # {"result":{"offset":1,"epoch":"..."}}

Or with Centrifugo's Python client (``pip install cent``), unchanged::

    from cent import AsyncClient, PublishRequest
    client = AsyncClient("http://127.0.0.1:8000/api", "secret")
    result = await client.publish(PublishRequest(channel="news:lobby", data={"text": "hi"}))
"""

from __future__ import annotations

import logging
import os
import secrets

from fastapi import FastAPI

from fastapi_realtime import ChannelOptions, Hub, HubSettings

from ._serve import serve

API_KEY = os.environ.get("API_KEY") or secrets.token_urlsafe(24)
"""The key every ``/api`` request must carry (``X-API-Key`` or ``Authorization: apikey ...``)."""

hub = Hub(
    HubSettings(
        allow_anonymous=True,
        namespaces={
            "news": ChannelOptions(history_size=100, history_ttl=3600),
            "chat": ChannelOptions(history_size=100, history_ttl=3600, presence=True),
        },
    )
)
app = FastAPI(title="fastapi-realtime HTTP server API", lifespan=hub.lifespan)
app.include_router(hub.router())
app.include_router(hub.api_router(api_key=API_KEY))


if __name__ == "__main__":
    if "API_KEY" not in os.environ:
        logging.basicConfig(level=logging.INFO)
        logging.getLogger(__name__).info("API key for this run: %s", API_KEY)
    serve(app)
