"""Chat rooms on hand-written endpoints (the tutorial API); `make demo` serves the SDK-based demo instead.

- ``GET /``: the page (``static/chat.html``): pick a name and a room, and chat.
- ``WS /ws/{room}?name=...``: joins ``room`` and publishes every text the client sends to it.
- ``POST /announce`` ``{"text": ...}``: one message to every connection, whatever its room.
- ``GET /health``: ``{"status": "ok"}``.

Every frame the server sends is one JSON object::

    {"type": "join",     "room": "lobby", "name": "ada", "online": ["ada", "bob"]}
    {"type": "message",  "room": "lobby", "name": "ada", "text": "hello"}
    {"type": "leave",    "room": "lobby", "name": "bob", "online": ["ada"]}
    {"type": "announce", "text": "server restarts at noon"}

A client's own ``join`` is the first frame it gets: from then on it is in the room.

Run it with ``make demo`` or ``python -m examples.chat`` (``HOST`` and ``PORT`` from the
environment, default 127.0.0.1:8000) and open http://127.0.0.1:8000 in two browser tabs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, WebSocket
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from fastapi_realtime import ChannelOptions, Hub, HubSettings

from ._serve import serve

CHAT_PAGE = Path(__file__).parent / "static" / "chat.html"
ROOM_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Room names: plain channel names of the default namespace (no ``$`` private, ``#`` user or
``ns:`` namespace syntax)."""

hub = Hub(HubSettings(namespaces={"": ChannelOptions(presence=True)}))
app = FastAPI(title="fastapi-realtime chat", lifespan=hub.lifespan)


class Announcement(BaseModel):
    """The body of ``POST /announce``."""

    text: str = Field(min_length=1, max_length=1000)


async def online(room: str) -> list[str]:
    """The names of the people in ``room``, sorted (one entry per connection)."""
    return sorted(info.user for info in (await hub.presence(room)).values())


@app.websocket("/ws/{room}")
async def chat(
    websocket: WebSocket,
    room: Annotated[str, PathParam(pattern=ROOM_PATTERN)],
    name: Annotated[str, Query(min_length=1, max_length=32)] = "anonymous",
) -> None:
    """Join ``room`` as ``name`` and publish every text message to everyone in it."""
    async with hub.connection(websocket, user=name) as conn:
        await conn.join(room)
        await hub.publish(room, {"type": "join", "room": room, "name": name, "online": await online(room)})
        async for text in conn.iter_text():
            if text.strip():
                await hub.publish(room, {"type": "message", "room": room, "name": name, "text": text})
        await conn.leave(room)
        await hub.publish(room, {"type": "leave", "room": room, "name": name, "online": await online(room)})


@app.post("/announce")
async def announce(body: Announcement) -> dict[str, Any]:
    """Send ``body.text`` to every connected client, in every room."""
    await hub.broadcast({"type": "announce", "text": body.text})
    return {"status": "sent"}


@app.get("/", include_in_schema=False)
async def page() -> FileResponse:
    """The demo chat page."""
    return FileResponse(CHAT_PAGE, media_type="text/html")


@app.get("/health")
async def health() -> dict[str, str]:
    """Liveness probe."""
    return {"status": "ok"}


NEXT_STEPS = """
fastapi-realtime demo chat: open {url} in two browser tabs, pick a name in each, join the same
room, and chat. Stop it with Ctrl+C. Another address: HOST=0.0.0.0 PORT=9000 make demo
"""

if __name__ == "__main__":
    serve(app, next_steps=NEXT_STEPS)
