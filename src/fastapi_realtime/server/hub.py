"""The server's hub: a :class:`~fastapi_realtime.Hub` that keeps metrics and tags log records.

It counts through the hub's observer hook and its broker events (see :mod:`.metrics`), wraps
each connection's transport to count frames, and binds each connection to the log context
(:mod:`.logs`) so that records made while serving it carry its client id and user.
"""

from __future__ import annotations

from typing import Any

from ..app import Hub
from ..protocol.codecs import CentrifugeCodec, Codec
from ..protocol.messages import Publication
from ..session import Session, Transport
from .logs import bind_session
from .metrics import Metrics, counting


def transport_name(codec: Codec) -> str:
    """``websocket``, ``uni_websocket`` (Centrifuge protocol) or ``tutorial`` (hand-written endpoints)."""
    if isinstance(codec, CentrifugeCodec):
        return "uni_websocket" if codec.unidirectional else "websocket"
    return "tutorial"


class ServerHub(Hub):
    """A :class:`Hub` with :attr:`metrics`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = Metrics(lambda: self.stats, lambda: self.broker.healthy)
        self.observer = self.metrics
        self.on_session_closed.append(self._count_close)

    def open_session(self, transport: Transport, codec: Codec, **options: Any) -> Session:
        name = transport_name(codec)
        counted = counting(transport, self.metrics.frames(name))
        session = super().open_session(counted, codec, **options)
        bind_session(session)
        return session

    async def _count_close(self, session: Session) -> None:
        self.metrics.closed(session.close_code)

    def on_publication(self, channel: str, pub: Publication) -> None:
        super().on_publication(channel, pub)
        state = self._channels.get(channel)
        self.metrics.fanned_out(len(state.subscribers) if state is not None else 0)

    def on_broker_state(self, up: bool) -> None:
        super().on_broker_state(up)
        self.metrics.broker_state(up)
