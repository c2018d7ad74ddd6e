"""Listen without an SDK: Server-Sent Events and newline-delimited JSON over plain HTTP.

- ``GET /connection/uni_sse``: an ``EventSource`` (or ``curl -N``) gets the channel ``news``
  as Server-Sent Events; each event id carries the stream position, so a browser that
  reconnects (it sends ``Last-Event-ID``) gets what it missed.
- ``POST /connection/uni_http_stream``: the same pushes, one JSON object per line.
- ``POST /news``: publish ``{"text": ...}`` into ``news`` (kept for 100 publications).

Connections are anonymous here; ``on_connect`` subscribes every listener to ``news``
server-side. ::

    python -m examples.streams
    curl -N http://127.0.0.1:8000/connection/uni_sse
    curl -N -X POST -d '{}' http://127.0.0.1:8000/connection/uni_http_stream
    curl -X POST -H 'Content-Type: application/json' -d '{"text": "hi"}' http://127.0.0.1:8000/news
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from fastapi_realtime import ChannelOptions, ConnectContext, ConnectReply, Credentials, Hub, HubSettings

from ._serve import serve

CHANNEL = "news"

hub = Hub(
    HubSettings(
        allow_anonymous=True,
        namespaces={"": ChannelOptions(history_size=100, history_ttl=3600)},
    )
)


@hub.on_connect
async def subscribe_to_news(ctx: ConnectContext) -> ConnectReply:
    """Every listener gets ``news`` as a server-side subscription."""
    user = ctx.credentials.user if ctx.credentials is not None else ""
    return ConnectReply(credentials=Credentials(user=user, channels=[CHANNEL]))


app = FastAPI(title="fastapi-realtime streams", lifespan=hub.lifespan)
app.include_router(hub.router(uni_sse_path="/connection/uni_sse", uni_http_stream_path="/connection/uni_http_stream"))


@app.post("/news")
async def publish_news(body: dict[str, Any]) -> dict[str, int]:
    """Publish ``body`` into ``news``; returns its offset."""
    result = await hub.publish(CHANNEL, body)
    return {"offset": result.offset}


if __name__ == "__main__":
    serve(app, next_steps="Listen with: curl -N {url}/connection/uni_sse")
