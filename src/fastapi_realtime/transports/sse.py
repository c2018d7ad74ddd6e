"""Server-Sent Events framing, and the event ids that let a reconnecting reader recover.

Every frame of a unidirectional session (one unwrapped push, as JSON text) becomes one SSE
event ``data: <push>\\n\\n``; the codec's ping ``{}`` is an event too, so idle streams keep
moving through proxies. Pushes that carry stream positions (the ``connect`` push with its
server-side subscriptions, a ``subscribe`` push, a publication with an ``offset``) also get an
``id:``: the positions of every positioned channel of the stream so far, as compact ASCII
JSON ``{"<channel>": [offset, "epoch"], ...}`` (it comes back as an HTTP header). A
browser's ``EventSource`` sends the last id back as ``Last-Event-ID`` when it reconnects;
:func:`parse_last_event_id` reads it, and the endpoint asks the hub to recover each channel
from there.

The framing is written here rather than taken from sse-starlette: see the README ("Why not
sse-starlette").
"""

from __future__ import annotations

import json
from collections.abc import Callable

import orjson

from ..session import Frame

Positions = dict[str, tuple[int, str]]
"""Channel -> (offset, epoch) of the last publication a reader got."""


def sse_event(data: str, event_id: str | None = None) -> bytes:
    """One SSE event. ``data`` is JSON text (no raw newlines); ``event_id`` has no newlines."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {data}\n\n".encode()


class SSEEncoder:
    """Frames a unidirectional session's pushes as SSE events with position ids.

    ``start`` holds positions the reader already had (from its ``Last-Event-ID``), so a
    reconnect that recovers nothing still carries them on. An id longer than
    ``max_id_bytes`` is not sent: the reader keeps its previous id, and a later reconnect
    recovers from that older position (publications in between may come twice).
    """

    def __init__(self, max_id_bytes: int, start: Positions | None = None) -> None:
        self.max_id_bytes = max_id_bytes
        self.positions: Positions = dict(start or {})

    def __call__(self, frame: Frame) -> bytes:
        text = frame if isinstance(frame, str) else frame.decode()
        return sse_event(text, self._event_id(text))

    def _event_id(self, text: str) -> str | None:
        if '"offset"' not in text and '"epoch"' not in text and '"unsubscribe"' not in text:
            return None  # no position in it: skip parsing
        push = orjson.loads(text)
        if not isinstance(push, dict) or not self._observe(push):
            return None
        positions = {ch: [off, ep] for ch, (off, ep) in self.positions.items()}
        event_id = json.dumps(positions, separators=(",", ":"))  # ASCII: it comes back as a header
        return event_id if len(event_id) <= self.max_id_bytes else None

    def _observe(self, push: dict[str, object]) -> bool:
        """Update the positions from one push; whether they changed."""
        channel = push.get("channel")
        if isinstance(connect := push.get("connect"), dict):
            subs = connect.get("subs")
            return isinstance(subs, dict) and any([self._position(ch, sub) for ch, sub in subs.items()])
        if not isinstance(channel, str):
            return False
        if isinstance(pub := push.get("pub"), dict):
            offset, known = pub.get("offset"), self.positions.get(channel)
            if isinstance(offset, int) and known is not None:
                self.positions[channel] = (offset, known[1])
                return True
            return False
        if isinstance(sub := push.get("subscribe"), dict):
            return self._position(channel, sub)
        if "unsubscribe" in push:
            return self.positions.pop(channel, None) is not None
        return False

    def _position(self, channel: str, result: object) -> bool:
        if not isinstance(result, dict) or not (result.get("recoverable") or result.get("positioned")):
            return False
        offset, epoch = result.get("offset", 0), result.get("epoch", "")
        if not isinstance(offset, int) or not isinstance(epoch, str):
            return False
        self.positions[channel] = (offset, epoch)
        return True


def parse_last_event_id(value: str, max_bytes: int) -> Positions:
    """The positions in a ``Last-Event-ID`` sent back by a reader; ``ValueError`` with a clear
    message when it is not one of our ids."""
    if len(value) > max_bytes:
        raise ValueError(f"Last-Event-ID is longer than {max_bytes} bytes")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError("Last-Event-ID is not an id this server sent") from None
    if not isinstance(body, dict):
        raise ValueError("Last-Event-ID is not an id this server sent")
    positions: Positions = {}
    for channel, position in body.items():
        match position:
            case [int(offset), str(epoch)] if offset >= 0:
                positions[channel] = (offset, epoch)
            case _:
                raise ValueError(f"Last-Event-ID has a bad position for channel {channel[:100]!r}")
    return positions


def json_lines(frame: Frame) -> bytes:
    """HTTP-streaming framing: one JSON push per line."""
    return (frame if isinstance(frame, bytes) else frame.encode()) + b"\n"


Encoder = Callable[[Frame], bytes]


def sse_replies(frame: Frame) -> bytes:
    """A bidirectional frame (replies joined with ``\\n``) as one SSE event, one ``data:`` line
    per reply: ``EventSource`` joins them back with ``\\n``, as the client's decoder expects."""
    text = frame if isinstance(frame, str) else frame.decode()
    return "".join(f"data: {line}\n" for line in text.split("\n")).encode() + b"\n"
