"""One connected client: a bounded outbound queue, its writer, its subscriptions.

The hub hands a session publications with :meth:`Session.deliver`, which never awaits: the
frame is appended to the session's queue. After the fan-out, one loop callback (the hub's
:class:`Flusher`) sends every dirty session's queue, batched into as few frames as the codec
allows, for as long as each transport takes frames without waiting. A send that would wait,
because the client is not reading, is finished by a writer task started for that session,
which sends its queue until it is empty and then ends. So a broadcast costs one append per
subscriber, a client that keeps up costs no task switch, and a slow or dead client only fills
its own queue; when the queue passes ``client_queue_max_bytes`` the session is closed with
3008 ``slow`` and its queue is dropped at once. Replies to the client's own commands
(:meth:`Session.enqueue_reply`) are counted apart: they are bounded by the caller
(``client_reply_max_bytes``), and while more than ``client_queue_max_bytes`` of them wait,
the next :meth:`Session.receive` waits instead of reading another command.

One reader per connection: whoever calls :meth:`Session.receive` (the protocol handler, or
the code of a hand-written endpoint) reads the transport itself; there is no read-ahead.
When the session closes, a receive in progress is interrupted and raises
:class:`SessionClosed`. Closing starts the session's shutdown in a task of its own (so it
completes even if nobody waits for it): its handler may finish the command it is running,
its other tasks are cancelled, what was queued is flushed, the transport is closed, and the
hub forgets the session; all within about ``shutdown_timeout``.

On a :class:`DirectTransport` (our uvicorn WebSocket protocol) the first frame a session is
handed in a round of the flusher is written at once with ``write_now``, without a queue or a
coroutine; only what follows in the same round is queued and batched by the flush. A broadcast
hands every subscriber the same frame object, so the transport frames it once.

A session knows nothing of WebSockets: it drives a :class:`Transport`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import operator
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .protocol.codecs import Codec
from .protocol.codes import DisconnectCode
from .protocol.errors import Disconnect
from .protocol.messages import ClientInfo, Publication, RawJSON
from .protocol.tags_filter import TagsFilter
from .settings import HubSettings

log = logging.getLogger("fastapi_realtime.session")

Frame = str | bytes
NORMAL_CLOSURE = 1000


class TransportClosed(Exception):
    """The peer went away; ``code`` is the close code it sent (1006 when there was none)."""

    def __init__(self, code: int = 1006) -> None:
        self.code = code
        super().__init__(code)


class Transport(Protocol):
    """What a session needs from a connection. WebSocket and SSE adapters implement it."""

    async def receive(self) -> Frame:
        """The next frame from the peer; raises :class:`TransportClosed` when it is gone."""
        ...

    async def send(self, frame: Frame) -> None:
        """Write one frame."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` and ``reason``."""
        ...


@runtime_checkable
class DirectTransport(Transport, Protocol):
    """A transport that can also take a frame without a coroutine (our uvicorn WebSocket
    protocol). The session's flush writes through :meth:`write_now`, so a delivery costs one
    call, not a coroutine; a frame handed to many sessions (one broadcast, not batched with
    anything else) is the same object for all of them, which lets the transport frame it once."""

    def write_now(self, frame: Frame) -> bool:
        """Write ``frame`` now and return True; return False, writing nothing, when the
        connection is not taking data (the caller then awaits :meth:`send`). Raises
        :class:`TransportClosed` when the connection is gone."""
        ...


class Flusher:
    """Runs the pending flush of every session that queued frames, in one loop callback.

    A fan-out to N sessions thus schedules one callback, not N; share one per hub. Each run
    ends a *round* (``round`` counts them): on a direct transport, the first frame a session
    is handed in a round is written at once, and the rest of that round's frames wait for the
    run, which batches them. So one message per round (a paced or windowed publisher) costs
    one call per subscriber, and a flood still goes out in few, large frames.
    """

    __slots__ = ("_dirty", "_last_batch", "_last_joined", "round", "scheduled")

    def __init__(self) -> None:
        self._dirty: list[Session] = []
        self.scheduled = False
        self.round = 0
        self._last_batch: list[Frame] = []
        self._last_joined: Frame = ""

    def joined(self, batch: list[Frame]) -> Frame:
        """``batch`` (two or more frames of one kind) as one frame: text joined by ``\n``,
        binary end to end. A batch of the same frame objects as the last one gives the same
        object back, so the batch that every subscriber of a broadcast gets in a round is
        joined once and, on a direct transport, framed once."""
        last = self._last_batch
        if len(batch) == len(last) and all(map(operator.is_, batch, last)):
            return self._last_joined
        joined: Frame = "\n".join(batch) if isinstance(batch[0], str) else b"".join(batch)  # type: ignore[arg-type]
        self._last_batch, self._last_joined = batch, joined
        return joined

    def mark(self, session: Session) -> None:
        """Flush ``session`` at the end of this round."""
        self._dirty.append(session)
        self.end_round_soon()

    def end_round_soon(self) -> None:
        """Make sure this round ends (in one loop callback, shared by every session)."""
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self.scheduled = False
        self.round += 1
        dirty, self._dirty = self._dirty, []
        for session in dirty:
            try:
                session._flush()
            except Exception:  # a bug must cost one session, not every session after it
                log.exception("flushing session %s failed", session.id)
                session.close(DisconnectCode.INTERNAL)
        self._last_batch, self._last_joined = [], ""  # let the round's frames go


class _Resume:
    """Finish, inside a task, a coroutine that was started by hand and had to wait.

    ``send.send(None)`` ran it up to its first suspension, which yielded ``waiting_on``
    (an asyncio future, or ``None`` for a bare yield); awaiting this object hands that to the
    running task and drives the coroutine to its end, passing results and cancellation through.
    """

    def __init__(self, send: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._send = send
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, None]:
        send, waiting_on = self._send, self._waiting_on
        while True:
            try:
                result = yield waiting_on
            except BaseException as exc:
                try:
                    waiting_on = send.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = send.send(result)
                except StopIteration:
                    return

    def close(self) -> None:
        self._send.close()


class SessionClosed(Exception):
    """Raised by :meth:`Session.receive` once the session is closed."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


@dataclass(slots=True)
class Subscription:
    """A session's state in one channel.

    While ``buffer`` is a list the subscribe reply has not been sent yet: publications are
    held there, so the reply always goes first.
    """

    join_leave: bool = False
    positioned: bool = False
    offset: int = 0
    epoch: str = ""
    chan_info: RawJSON | None = None
    buffer: list[Publication] | None = field(default_factory=list)
    buffered_bytes: int = 0
    """Payload bytes held in ``buffer``; past ``client_queue_max_bytes`` the session is slow."""
    tags_filter: TagsFilter | None = None
    """Only publications whose tags match it are sent (the offset still advances)."""
    delta: bool = False
    """Fossil delta compression was negotiated."""
    delta_prev: RawJSON | None = None
    """With ``delta``: the payload the client holds last, the base of the next delta."""


def new_client_id() -> str:
    return secrets.token_hex(12)


class Session:
    """A client connection as the hub sees it. Create with :meth:`Hub.open_session`."""

    __slots__ = (
        "_appended",
        "_close_requested",
        "_closed_waiter",
        "_ending",
        "_flush_scheduled",
        "_flusher",
        "_handler",
        "_interrupting",
        "_is_closed",
        "_on_ended",
        "_pending_frame",
        "_ping_timer",
        "_pong_due",
        "_queue",
        "_queued_bytes",
        "_reader",
        "_replies_at",
        "_replies_sent",
        "_reply_bytes",
        "_sealed",
        "_suspended_send",
        "_taken_count",
        "_tasks",
        "_write_now",
        "_writer",
        "_writer_busy",
        "_writing_stopped",
        "_written_round",
        "any_frame_is_pong",
        "authenticated",
        "close_code",
        "close_reason",
        "codec",
        "conn_info",
        "id",
        "on_insufficient_state",
        "on_server_refresh",
        "on_server_subscribe",
        "settings",
        "subscriptions",
        "transport",
        "user",
    )

    def __init__(
        self,
        transport: Transport,
        codec: Codec,
        settings: HubSettings,
        *,
        user: str = "",
        conn_info: RawJSON | None = None,
        client_id: str | None = None,
        flusher: Flusher | None = None,
        on_ended: Callable[[Session], Awaitable[None]] | None = None,
    ) -> None:
        self.transport = transport
        self.codec = codec
        self.settings = settings
        self.id = client_id or new_client_id()
        self.user = user
        self.conn_info = conn_info
        self.authenticated = False
        """Whether the hub knows who this is (``Node.set_user``); until then it gets no pushes."""
        self.subscriptions: dict[str, Subscription] = {}
        self.on_insufficient_state: Callable[[str], None] | None = None
        """Called on a gap in a positioned channel; by default the session closes with 3010."""
        self.on_server_subscribe: Callable[[str], None] | None = None
        """Called when the server subscribes this session to a channel at run time."""
        self.on_server_refresh: Callable[[int], None] | None = None
        """Called with a new expiry (Unix seconds, 0: never) when the server API refreshes it."""
        self._write_now: Callable[[Frame], bool] | None = getattr(transport, "write_now", None)
        """The transport's direct write (see :class:`DirectTransport`), if it has one."""
        self._written_round = -1
        """The flusher's round in which a frame was last written at once (see :class:`Flusher`)."""
        self._queue: deque[Frame] | None = None
        """Frames waiting to be sent, in order; ``None`` while there are none (an idle
        connection holds no deque)."""
        self._queued_bytes = 0
        """Bytes of live frames in the queue (replies are counted in ``_reply_bytes``)."""
        self._reply_bytes = 0
        self._appended = 0
        """Frames ever appended to the queue; ``_taken_count`` counts those that left it."""
        self._taken_count = 0
        self._replies_at: deque[int] | None = None
        """The append numbers of the replies still in the queue, in order (``None``: none)."""
        self._replies_sent: asyncio.Event | None = None
        """Set when queued replies fell back under the limit (exists only while over it)."""
        self._reader: asyncio.Task[Any] | None = None
        """The task inside :meth:`receive`, interrupted when the session closes."""
        self._interrupting = False
        self._handler: asyncio.Task[Any] | None = None
        self._on_ended = on_ended
        self._ending: asyncio.Task[None] | None = None
        """The shutdown, started by the close (see :meth:`_mark_closed`)."""
        self._sealed = False
        """Set once nothing more may be queued (a slow close, a failed write, or shutdown)."""
        self._is_closed = False
        self._closed_waiter: asyncio.Future[None] | None = None
        """Resolved when the session closes; made only when someone waits for that."""
        self.close_code = 0
        self.close_reason = ""
        self._pong_due: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher = flusher or Flusher()
        self._flush_scheduled = False
        self._writer: asyncio.Task[None] | None = None
        """Sends for a client that is not keeping up; exists only while it is behind."""
        self._writer_busy = False
        """The writer task is sending; :meth:`_flush` leaves the queue to it."""
        self._writing_stopped = False
        """Set when a write failed or the session shut down: nothing more is sent."""
        self._suspended_send: _Resume | None = None
        self._pending_frame: Frame | None = None
        """A frame the direct transport did not take: the writer task sends it first."""
        self._close_requested = False
        self.any_frame_is_pong = False
        """Count every incoming frame as a pong (for codecs whose peers cannot answer pings)."""

    # -- identity ---------------------------------------------------------------------

    def info(self, chan_info: RawJSON | None = None) -> ClientInfo:
        return ClientInfo(user=self.user, client=self.id, conn_info=self.conn_info, chan_info=chan_info)

    @property
    def closed(self) -> bool:
        return self._is_closed

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    # -- outbound ---------------------------------------------------------------------

    def enqueue(self, frame: Frame) -> bool:
        """Queue a live ``frame`` (a push, a message) for the writer. Never blocks.

        Past ``client_queue_max_bytes`` of live frames the session closes with 3008 ``slow``.
        Frames are still taken after a close while the session finishes the command it was
        running (see :meth:`close`); returns False once nothing more is sent.
        """
        if self._sealed:
            return False
        if self._queue is None and self._written_round != self._flusher.round and self._write_at_once(frame):
            return True
        if self._queued_bytes + len(frame) > self.settings.client_queue_max_bytes:
            self.close(DisconnectCode.SLOW)
            return False
        self._append(frame)
        return True

    def enqueue_reply(self, frame: Frame) -> bool:
        """Queue the reply to one of the client's commands, in order with everything else.

        A reply is not live traffic: it is not counted against ``client_queue_max_bytes``
        (the caller bounds its size), so a large recovery or history reply never makes the
        client "slow". While more than that limit of replies waits to be written,
        :meth:`receive` reads no further command. Returns False once nothing more is sent.
        """
        if self._sealed:
            return False
        if self._queue is None and self._write_at_once(frame):
            return True
        if self._replies_at is None:
            self._replies_at = deque()
        self._replies_at.append(self._appended)
        self._reply_bytes += len(frame)
        self._append(frame, live=False)
        return True

    def _write_at_once(self, frame: Frame) -> bool:
        """Write ``frame`` through a direct transport now, if it is this session's first frame
        of the flusher's round (later ones are batched by the flush), nothing of the session
        waits to be sent (so order is kept) and the transport takes it without waiting."""
        write_now, flusher = self._write_now, self._flusher
        if write_now is None or self._written_round == flusher.round or self._writer_busy or self._writing_stopped:
            return False
        self._written_round = flusher.round
        if not flusher.scheduled:
            flusher.end_round_soon()
        try:
            return write_now(frame)
        except Exception as exc:
            self._write_failed(exc)
            return True  # dropped with the connection, as a queued frame would be

    def _append(self, frame: Frame, *, live: bool = True) -> None:
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        queue.append(frame)
        self._appended += 1
        if live:
            self._queued_bytes += len(frame)
        if not self._flush_scheduled and not self._writer_busy:
            self._flush_scheduled = True
            self._flusher.mark(self)

    def deliver(self, channel: str, sub: Subscription, pub: Publication) -> None:
        """Hand the session a publication of ``channel``, to which it is subscribed with ``sub``
        (called by the hub's fan-out, which keeps each subscriber's ``sub`` beside it)."""
        if self._is_closed:
            return
        if sub.buffer is not None:
            sub.buffer.append(pub)
            sub.buffered_bytes += len(pub.data)
            if sub.buffered_bytes > self.settings.client_queue_max_bytes:
                self.close(DisconnectCode.SLOW)
            return
        if sub.positioned and pub.offset:
            if pub.offset != sub.offset + 1:
                self.insufficient_state(channel)
                return
            sub.offset = pub.offset
        if sub.tags_filter is not None and not sub.tags_filter.matches(pub.tags):
            return
        try:
            if sub.delta:
                prev, base = sub.delta_prev, pub.delta_base
                frame = self.codec.delta_publication(channel, pub, prev is not None and base == prev)
                sub.delta_prev = pub.data
            else:
                frame = pub.encoded.get(self.codec.name) or self.codec.publication(channel, pub)
        except Disconnect as exc:  # binary data for a JSON client: 3506 for this client only
            self.close(exc.code, exc.reason)
            return
        self.enqueue(frame)

    def deliver_join(self, channel: str, info: ClientInfo, *, leave: bool = False) -> None:
        sub = self.subscriptions.get(channel)
        if sub is None or not sub.join_leave or self._is_closed:
            return
        frame = self.codec.leave(channel, info) if leave else self.codec.join(channel, info)
        if frame is not None:
            self.enqueue(frame)

    def finish_subscribe(self, channel: str, after_offset: int = 0) -> None:
        """End buffering for ``channel``: queue what arrived during subscribe, in order.

        Publications with an offset at or below ``after_offset`` were already sent in the
        subscribe reply (as recovered publications) and are skipped.
        """
        sub = self.subscriptions.get(channel)
        if sub is None or sub.buffer is None:
            return
        buffered, sub.buffer = sub.buffer, None
        for pub in buffered:
            if pub.offset and pub.offset <= after_offset:
                continue
            self.deliver(channel, sub, pub)

    def insufficient_state(self, channel: str) -> None:
        """The session missed publications of positioned ``channel``: make it recover."""
        if self.on_insufficient_state is not None:
            self.on_insufficient_state(channel)
        else:
            self.close(DisconnectCode.INSUFFICIENT_STATE)

    def _next_frame(self) -> Frame:
        """Take the next frame off the queue: when the codec batches, several queued messages
        of one kind up to ``client_max_batch_bytes``, text joined by ``\n``, binary (messages
        that carry their length) end to end."""
        queue = self._queue
        assert queue is not None
        first = queue.popleft()
        if not queue or not self.codec.batching:
            if not queue:
                self._queue = None
            self._taken(first)
            return first
        kind = type(first)
        sep = 1 if kind is str else 0
        parts = [first]
        size = len(first)
        max_batch = self.settings.client_max_batch_bytes
        while queue and type(queue[0]) is kind and size + len(queue[0]) < max_batch:
            nxt = queue.popleft()
            size += len(nxt) + sep
            parts.append(nxt)
        if not queue:
            self._queue = None
        if self._replies_at is None:  # all live frames: account for them at once
            self._taken_count += len(parts)
            self._queued_bytes -= size - sep * (len(parts) - 1)
        else:
            for part in parts:
                self._taken(part)
        # Several messages a round: this client is being flooded; the next round's first
        # frame waits for the batch too (see _write_at_once), so a flood costs one write a round.
        self._written_round = self._flusher.round
        return first if len(parts) == 1 else self._flusher.joined(parts)

    def _clear_queue(self) -> None:
        self._queue = self._replies_at = None
        self._pending_frame = None
        self._queued_bytes = self._reply_bytes = 0
        self._taken_count = self._appended

    def _taken(self, frame: Frame) -> None:
        """Account for ``frame`` leaving the queue."""
        replies = self._replies_at
        number, self._taken_count = self._taken_count, self._taken_count + 1
        if replies and replies[0] == number:
            replies.popleft()
            if not replies:
                self._replies_at = None
            self._reply_bytes -= len(frame)
            if self._replies_sent is not None and self._reply_bytes <= self.settings.client_queue_max_bytes:
                self._replies_sent.set()
        else:
            self._queued_bytes -= len(frame)

    def _flush(self) -> None:
        """Send what is queued from a loop callback, for as long as the transport takes frames
        without waiting. The first send that has to wait (the client is not reading) is handed
        to the writer task, so the fan-out and this callback never wait on a socket, and a
        client that keeps up costs no task switch per message."""
        self._flush_scheduled = False
        if self._writer_busy or self._writing_stopped:
            return
        write_now = self._write_now
        while self._queue:
            if write_now is not None:
                frame = self._next_frame()
                try:
                    if write_now(frame):
                        continue
                except Exception as exc:
                    self._write_failed(exc)
                    return
                self._pending_frame = frame
                self._start_writer()
                return
            send = self.transport.send(self._next_frame())
            try:
                waiting_on = send.send(None)
            except StopIteration:
                continue
            except Exception as exc:
                send.close()
                self._write_failed(exc)
                return
            self._suspended_send = _Resume(send, waiting_on)
            self._start_writer()
            return

    def _start_writer(self) -> None:
        self._writer_busy = True  # from now on the queue is the writer's
        self._writer = asyncio.create_task(self._write_out(), name=f"session-{self.id}-writer")

    async def _write_out(self) -> None:
        """Finish the send that had to wait, then send the queue until it is empty."""
        try:
            if self._suspended_send is not None:
                suspended, self._suspended_send = self._suspended_send, None
                await suspended
            if self._pending_frame is not None:
                pending, self._pending_frame = self._pending_frame, None
                await self.transport.send(pending)
            while self._queue:
                await self.transport.send(self._next_frame())
        except Exception as exc:
            self._write_failed(exc)
        finally:
            self._writer_busy = False

    def _write_failed(self, exc: Exception) -> None:
        """The transport broke: nothing more can be written."""
        log.debug("write to session %s failed: %r", self.id, exc)
        self._writing_stopped = self._sealed = True
        self._mark_closed(DisconnectCode.WRITE_ERROR, DisconnectCode.WRITE_ERROR.reason)

    # -- inbound ----------------------------------------------------------------------

    async def receive(self) -> Frame:
        """The next frame from the client. Raises :class:`SessionClosed` once closed.

        The caller is the connection's only reader: a second concurrent call raises
        ``RuntimeError``. A frame over ``client_max_frame_bytes`` closes the session with
        1009. When the session closes meanwhile, the call is interrupted (a cancellation of
        the calling task, taken back before :class:`SessionClosed` is raised).
        """
        if self._is_closed:
            raise SessionClosed(self.close_code, self.close_reason)
        if self._reader is not None:
            raise RuntimeError(f"session {self.id} is already being read: one reader per connection")
        task = self._reader = asyncio.current_task()
        assert task is not None
        try:
            if self._reply_bytes > self.settings.client_queue_max_bytes:
                self._replies_sent = asyncio.Event()
                await self._replies_sent.wait()
            frame = await self.transport.receive()
        except TransportClosed as exc:
            self._reader = None
            self._mark_closed(exc.code, "connection closed")
            raise SessionClosed(self.close_code, self.close_reason) from None
        except asyncio.CancelledError:
            if self._interrupted(task):
                raise SessionClosed(self.close_code, self.close_reason) from None
            raise
        finally:
            self._reader = None
            self._replies_sent = None
        if self._interrupted(task):  # the transport swallowed the interruption
            raise SessionClosed(self.close_code, self.close_reason)
        limit = self.settings.client_max_frame_bytes
        size = len(frame)
        if isinstance(frame, str) and size * 4 > limit:
            size = len(frame.encode())
        if size > limit:
            self.close(DisconnectCode.MESSAGE_TOO_BIG)
            raise SessionClosed(self.close_code, self.close_reason)
        if self.any_frame_is_pong:
            self.pong()
        return frame

    def _interrupted(self, task: asyncio.Task[Any]) -> bool:
        """Whether the close interrupted ``task`` in :meth:`receive` and no one else cancelled
        it too; takes the interruption back either way."""
        if not self._interrupting:
            return False
        self._interrupting = False
        return task.uncancel() == 0

    # -- liveness ---------------------------------------------------------------------

    def pong(self) -> bool:
        """Record a pong. Returns False if no ping was waiting for one."""
        if self._pong_due is None:
            return False
        self._pong_due.cancel()
        self._pong_due = None
        return True

    def start_pinging(self) -> None:
        """Send the codec's ping every ``ping_interval``; close with 3012 when a pong is late.
        A timer, not a task: an idle connection costs no coroutine."""
        if self.codec.ping is not None and self.settings.ping_interval > 0 and not self._is_closed:
            if self._ping_timer is not None:
                self._ping_timer.cancel()
            self._ping_timer = asyncio.get_running_loop().call_later(self.settings.ping_interval, self._ping)

    def _ping(self) -> None:
        self._ping_timer = None
        ping = self.codec.ping
        if self._is_closed or ping is None:
            return
        loop = asyncio.get_running_loop()
        if self._pong_due is None and self.codec.expects_pong:
            self._pong_due = loop.call_later(self.settings.pong_timeout, self.close, DisconnectCode.NO_PONG)
        self.enqueue(ping)
        if not self._is_closed:
            self._ping_timer = loop.call_later(self.settings.ping_interval, self._ping)

    # -- lifetime ---------------------------------------------------------------------

    def start_task(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        """Run ``coro`` for as long as the session lives; it is cancelled when the session ends.

        If the task fails, the session is closed with 3004 and the error is logged.
        """
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("task of session %s failed", self.id, exc_info=exc)
            self.close(DisconnectCode.INTERNAL)

    def _mark_closed(self, code: int, reason: str) -> None:
        if self._is_closed:
            return
        self.close_code, self.close_reason = code, reason
        self._is_closed = True
        waiter = self._closed_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._pong_due is not None:
            self._pong_due.cancel()
            self._pong_due = None
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task():
            self._interrupting = True
            reader.cancel()
        self._ending = asyncio.get_running_loop().create_task(self._shutdown(), name=f"session-{self.id}-shutdown")

    @property
    def closed_by_server(self) -> bool:
        """Whether the server ended the session (:meth:`close`), rather than the client or the
        network (the connection closed or broke)."""
        return self._close_requested

    def close(self, code: int = DisconnectCode.FORCE_DISCONNECT, reason: str | None = None) -> None:
        """Ask the session to end with ``code``. Never blocks; idempotent.

        Reading stops at once. The handler may finish the command it is running (its reply is
        still sent), then what was queued is sent and the connection closed, all bounded by
        ``shutdown_timeout``. With 3008 ``slow`` the queue is dropped at once instead.
        """
        if self._is_closed:
            return
        if code == DisconnectCode.SLOW:
            self._sealed = True
            self._clear_queue()
        if reason is None:
            reason = DisconnectCode(code).reason if code in DisconnectCode._value2member_map_ else "disconnect"
        self._close_requested = True
        self._mark_closed(code, reason)

    async def run(self, handler: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve the connection until it ends.

        With a ``handler``, that coroutine runs in a task of the session (see :meth:`start`).
        Without one, the caller's own code reads (a hand-written endpoint). Returns once the
        session has shut down (see :meth:`wait_ended`).
        """
        if handler is not None:
            self.start(handler)
        await self.wait_ended()

    def start(self, handler: Callable[[], Awaitable[None]]) -> None:
        """Run ``handler`` in a task of the session and return at once: the task, which reads
        with :meth:`receive`, is then all that serves the connection. When the handler
        returns, the session closes with 1000."""
        self._handler = self.start_task(self._run_handler(handler))

    async def wait_ended(self) -> None:
        """Wait until the session is closed and its shutdown is complete. Cancelling the
        wait leaves the shutdown running."""
        if not self._is_closed:
            if self._closed_waiter is None:
                self._closed_waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._closed_waiter)
        assert self._ending is not None
        await asyncio.shield(self._ending)

    async def _run_handler(self, handler: Callable[[], Awaitable[None]]) -> None:
        with contextlib.suppress(SessionClosed):
            await handler()
        self.close(NORMAL_CLOSURE, "")  # a handler that returns is done with the connection

    async def _shutdown(self) -> None:
        try:
            await self._stop()
        except Exception:  # a bug here must still let the hub forget the session
            log.exception("shutting down session %s failed", self.id)
        finally:
            if self._on_ended is not None:
                try:
                    await self._on_ended(self)
                except Exception:
                    log.exception("removing session %s failed", self.id)
            # The hooks are bound methods of the session's owners, which hold the session: let
            # the ended session and its owners go by reference counting, not by the collector.
            self.on_insufficient_state = self.on_server_subscribe = self.on_server_refresh = None

    async def _stop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout
        graceful = self._close_requested and not self._sealed
        handler = self._handler if graceful else None
        if handler is not None and not handler.done():
            # Let the handler finish the command it is running, so its reply goes out.
            for task in list(self._tasks):
                if task is not handler:
                    task.cancel()
            await asyncio.wait((handler,), timeout=max(0.0, deadline - loop.time()))
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._sealed = True
        if graceful:
            farewell = self.codec.disconnect(self.close_code, self.close_reason)
            if farewell is not None:
                self._append(farewell)
            if self._queue or self._writer_busy:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._drain(), max(0.0, deadline - loop.time()))
        self._writing_stopped = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        if self._suspended_send is not None:
            self._suspended_send.close()
            self._suspended_send = None
        self._clear_queue()
        if self._close_requested:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.transport.close(self.close_code, self.close_reason), self.settings.shutdown_timeout
                )

    async def _drain(self) -> None:
        """Send what is queued through the writer task; stop if writing fails."""
        while not self._writing_stopped:
            if self._writer is None or self._writer.done():
                if not self._queue:
                    return
                self._start_writer()
            assert self._writer is not None
            await self._writer
