"""Prometheus metrics of one hub, in a registry of its own (two hubs in one process never clash).

What is counted, and where it comes from (nothing per delivery):

- connections, users, channels, subscriptions, broker up: read from the hub at scrape time;
- commands: a latency histogram per method and errors per method and code (the hub's
  :class:`~fastapi_realtime.observe.Observer` hook, once per command);
- frames received and sent per transport (``websocket``, ``uni_websocket``, ``tutorial``):
  counted by a transport wrapper, once per frame (a frame sent batches many messages), in plain
  integers read at scrape time: on the direct path a frame can be one delivery, and a
  Prometheus counter's lock per frame would cost more than the rest of the delivery;
- publications fanned out and their deliveries: once per publication, ``+= subscribers``;
- disconnects per close code, slow-consumer disconnects (a queue over ``client_queue_max_bytes``
  closes with 3008): once per closed session;
- broker outages and reconnects: once per broker state change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..observe import Observer
from ..protocol.codes import DisconnectCode
from ..session import DirectTransport, Frame, Transport

PREFIX = "fastapi_realtime"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _HubGauges(Collector):
    """Gauges read from the hub when Prometheus scrapes."""

    def __init__(self, stats: Callable[[], dict[str, int]], broker_up: Callable[[], bool]) -> None:
        self._stats = stats
        self._broker_up = broker_up

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._stats()
        yield GaugeMetricFamily(f"{PREFIX}_connections", "Open client connections.", value=stats["sessions"])
        yield GaugeMetricFamily(f"{PREFIX}_users", "Distinct users connected.", value=stats["users"])
        yield GaugeMetricFamily(f"{PREFIX}_channels", "Channels with subscribers here.", value=stats["channels"])
        yield GaugeMetricFamily(f"{PREFIX}_subscriptions", "Client subscriptions.", value=stats["subscriptions"])
        yield GaugeMetricFamily(f"{PREFIX}_broker_up", "1 when the broker is reachable.", value=int(self._broker_up()))


class FrameCounts:
    """Frames received from and sent to the clients of one transport kind."""

    __slots__ = ("received", "sent")

    def __init__(self) -> None:
        self.received = 0
        self.sent = 0


class _FrameCounters(Collector):
    """The frame counters, read when Prometheus scrapes."""

    def __init__(self, counts: dict[str, FrameCounts]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        received = CounterMetricFamily(f"{PREFIX}_frames_received", "Frames from clients.", labels=["transport"])
        sent = CounterMetricFamily(f"{PREFIX}_frames_sent", "Frames to clients.", labels=["transport"])
        for name, counts in self._counts.items():
            received.add_metric([name], counts.received)
            sent.add_metric([name], counts.sent)
        yield received
        yield sent


class Metrics(Observer):
    """The metrics of one hub; :meth:`exposition` is what ``/metrics`` serves."""

    def __init__(self, stats: Callable[[], dict[str, int]], broker_up: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.command_seconds = Histogram(
            f"{PREFIX}_command_duration_seconds", "Client command latency.", ["method"], registry=r,
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.command_errors = Counter(
            f"{PREFIX}_command_errors",
            "Commands answered with an error or a disconnect.",
            ["method", "code"],
            registry=r,
        )
        self._frames: dict[str, FrameCounts] = {}
        self.publications = Counter(f"{PREFIX}_publications", "Publications fanned out here.", registry=r)
        self.deliveries = Counter(f"{PREFIX}_deliveries", "Publications queued to subscribers here.", registry=r)
        self.disconnects = Counter(f"{PREFIX}_disconnects", "Closed connections by close code.", ["code"], registry=r)
        self.slow_disconnects = Counter(
            f"{PREFIX}_slow_disconnects", "Queue overflows: clients disconnected with 3008 (slow).", registry=r
        )
        self.broker_outages = Counter(f"{PREFIX}_broker_outages", "Times the broker became unreachable.", registry=r)
        self.broker_reconnects = Counter(f"{PREFIX}_broker_reconnects", "Times the broker came back.", registry=r)
        r.register(_HubGauges(stats, broker_up))
        r.register(_FrameCounters(self._frames))

    def frames(self, transport: str) -> FrameCounts:
        """The frame counts of ``transport`` (``websocket``, ``uni_websocket``, ``tutorial``)."""
        counts = self._frames.get(transport)
        if counts is None:
            counts = self._frames[transport] = FrameCounts()
        return counts

    def command(self, method: str, seconds: float, error: int) -> None:
        self.command_seconds.labels(method).observe(seconds)
        if error:
            self.command_errors.labels(method, str(error)).inc()

    def fanned_out(self, subscribers: int) -> None:
        """One publication reached ``subscribers`` local subscribers."""
        self.publications.inc()
        self.deliveries.inc(subscribers)

    def closed(self, code: int) -> None:
        """A connection closed with ``code``."""
        self.disconnects.labels(str(code)).inc()
        if code == DisconnectCode.SLOW:
            self.slow_disconnects.inc()

    def broker_state(self, up: bool) -> None:
        (self.broker_reconnects if up else self.broker_outages).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


class CountingTransport:
    """A transport that counts the frames passing through it."""

    __slots__ = ("_counts", "_inner")

    def __init__(self, inner: Transport, counts: FrameCounts) -> None:
        self._inner = inner
        self._counts = counts

    async def receive(self) -> Frame:
        frame = await self._inner.receive()
        self._counts.received += 1
        return frame

    async def send(self, frame: Frame) -> None:
        await self._inner.send(frame)
        self._counts.sent += 1

    async def close(self, code: int, reason: str) -> None:
        await self._inner.close(code, reason)


class CountingDirectTransport(CountingTransport):
    """A :class:`CountingTransport` of a transport with a direct write, which it keeps."""

    __slots__ = ("_write_now",)

    def __init__(self, inner: DirectTransport, counts: FrameCounts) -> None:
        super().__init__(inner, counts)
        self._write_now = inner.write_now

    def write_now(self, frame: Frame) -> bool:
        if self._write_now(frame):
            self._counts.sent += 1
            return True
        return False


def counting(inner: Transport, counts: FrameCounts) -> CountingTransport:
    """``inner`` counted into ``counts``, with its direct write if it has one."""
    if isinstance(inner, DirectTransport):
        return CountingDirectTransport(inner, counts)
    return CountingTransport(inner, counts)
