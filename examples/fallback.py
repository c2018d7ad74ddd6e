"""When WebSocket is refused: centrifuge-js's ``http_stream`` and ``sse`` fallback transports.

- ``WS /connection/websocket``: the usual endpoint.
- ``POST /connection/http_stream`` and ``GET /connection/sse``: the same protocol over one
  streaming HTTP response, with the client's commands in ``POST /emulation`` requests
  (bidirectional emulation, as Centrifugo). centrifuge-js uses them when it is given a
  transport list and the WebSocket fails (a proxy that drops upgrades, say)::

      const client = new Centrifuge([
        { transport: 'websocket', endpoint: 'ws://127.0.0.1:8000/connection/websocket' },
        { transport: 'http_stream', endpoint: 'http://127.0.0.1:8000/connection/http_stream' },
        { transport: 'sse', endpoint: 'http://127.0.0.1:8000/connection/sse' },
      ], { emulationEndpoint: 'http://127.0.0.1:8000/emulation' });

Connections are anonymous here; channels in ``chat:`` keep history and presence, and clients
may publish into them. ::

    python -m examples.fallback
"""

from __future__ import annotations

from fastapi import FastAPI

from fastapi_realtime import ChannelOptions, Hub, HubSettings

from ._serve import serve

CHAT = ChannelOptions(
    history_size=100,
    history_ttl=3600,
    presence=True,
    allow_publish_for_client=True,
    allow_publish_for_anonymous=True,
)

hub = Hub(HubSettings(allow_anonymous=True, namespaces={"": ChannelOptions(), "chat": CHAT}))
app = FastAPI(title="fastapi-realtime fallback transports", lifespan=hub.lifespan)
app.include_router(hub.router(http_stream_path="/connection/http_stream", sse_path="/connection/sse"))


if __name__ == "__main__":
    serve(app)
