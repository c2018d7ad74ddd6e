"""Broadcast probe: how long one publication takes to reach the last of N idle subscribers, by
the kernel's clock, whatever the speed of the client that reads them.

``delivery.py`` times a broadcast in its Node.js load generator (``delivery.mjs``): the last
subscriber counts as served when the client has read it. With 5,000 sockets reading them all
takes the client tens of ms, and every server, Node ``ws`` included, shows a p99 near 90-100 ms:
the figure measures the reader as much as the server. This probe asks the kernel instead. Every subscriber socket has
``SO_TIMESTAMPNS`` set, so each ``recvmsg`` returns, as ``SCM_TIMESTAMPNS`` ancillary data, the
``CLOCK_REALTIME`` time the kernel stamped on the last packet it returns (on loopback: when the
server's write handed the packet to the loopback device, in the server's own ``send``, with
``net.core.netdev_tstamp_prequeue`` at its default 1; the socket queues it microseconds later). A
subscriber's delivery time is the stamp of the ``recvmsg`` that completed the frame holding the
publication; whenever the probe gets round to reading it does not change that stamp.

For every N (default 1000, 5000) and every server (the names of ``delivery.py``) it starts a
fresh server on 127.0.0.1 pinned to one core (``taskset -c 0``), runs itself on another
(``--client-cpu``, default 1), connects N subscribers over plain sockets (100 handshakes in
flight; Centrifuge servers get ``connect`` + ``subscribe``), publishes warm-ups until every
subscriber has one (the barrier: everybody is registered), then ``--broadcasts`` times:
``t0 = time.time_ns()``, one publication ``{"i":k,"p":"<pad>"}`` written to ``/publish``, every
subscriber read until it has payload k, pause 100 ms. It reports, per (server, N):

* ``last p50/p99 ms``: latest subscriber stamp - t0 (the broadcast reached everybody), over the
  broadcasts (nearest rank: with 20 broadcasts p99 is the worst).
* ``median ms``/``first ms``: the median and the earliest subscriber stamp - t0, p50 over the
  broadcasts (``first`` is the server's reaction time: read the publish, start writing).
* ``read ms``: p50 of when the probe itself had read the last subscriber - t0: the figure a
  reading client reports (for comparison; with ``--read-delay-ms`` it includes the delay).
* ``srv CPU ms/bcast``: the server's ``utime + stime`` (``/proc/<pid>/stat``, all threads) over
  the broadcasts, / broadcasts: its own work for one fan-out to N (and the TCP receive work of
  the publisher's frame and of the subscribers' ACKs charged to it). ``/proc`` counts in clock
  ticks (10 ms): with 20 broadcasts the figure moves in steps of 0.5 ms.
* ``bad``: stamps that break what they must mean: before t0, after the probe read them, or
  missing. Any non-zero count makes the row's figures suspect.

Run from the repository root (project installed; ``npm ci --prefix bench`` once for node-ws)::

    python bench/broadcast_probe.py            # about a minute; --help for the knobs

Linux only (``SO_TIMESTAMPNS``, ``taskset``, ``/proc``). The probe holds N + 1 sockets: it
raises its ``RLIMIT_NOFILE`` soft limit to the hard limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shlex
import socket
import statistics
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import delivery
import fanout
from delivery import SERVERS, quantile, server_process
from fanout import fmt
from procstat import cpu_seconds
from websockets.frames import Frame, Opcode

# Python (3.11) does not export these; 35 is their value in asm-generic/socket.h (x86-64, arm64,
# most architectures; not alpha, mips, parisc, sparc), where SCM_TIMESTAMPNS == SO_TIMESTAMPNS.
SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS: int = getattr(socket, "SCM_TIMESTAMPNS", SO_TIMESTAMPNS)
TIMESPEC = struct.Struct("ll")  # struct timespec on 64-bit Linux: tv_sec, tv_nsec
ANCILLARY_BYTES = socket.CMSG_SPACE(TIMESPEC.size)
RECV_BYTES = 65536
MARK = b'{"i":'
CHANNEL = "bench"
HANDSHAKE_BATCH = 100
WARMUP_WAIT = 2.0
WARMUP_ROUNDS = 10
PAUSE = 0.1
UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@dataclass(frozen=True)
class Options:
    """Everything that shapes a run; printed back as the command that reproduces it."""

    servers: tuple[str, ...]
    subscribers: tuple[int, ...]
    broadcasts: int
    payload_bytes: int
    read_delay_ms: float
    timeout: float
    server_cpu: int
    client_cpu: int
    ws: str
    python: str
    node: str

    def command(self) -> str:
        """The exact command line that repeats this benchmark."""
        return shlex.join([
            self.python, str(Path(__file__).resolve()),
            "--servers", ",".join(self.servers), "--subscribers", ",".join(map(str, self.subscribers)),
            "--broadcasts", str(self.broadcasts), "--payload-bytes", str(self.payload_bytes),
            "--read-delay-ms", f"{self.read_delay_ms:g}", "--timeout", f"{self.timeout:g}",
            "--server-cpu", str(self.server_cpu), "--client-cpu", str(self.client_cpu),
            "--ws", self.ws, "--node", self.node,
        ])  # fmt: skip

    def server_options(self) -> delivery.Options:
        """The ``delivery.py`` options ``server_process`` reads (the servers, the cores, ``--ws``)."""
        return delivery.parse_args([
            "--servers", ",".join(self.servers), "--server-cpu", str(self.server_cpu),
            "--client-cpu", str(self.client_cpu), "--ws", self.ws, "--python", self.python, "--node", self.node,
        ])  # fmt: skip


@dataclass
class Row:
    """What one (server, N) run measured; times in ms from each broadcast's t0."""

    server: str
    subscribers: int
    connect_seconds: float = 0.0
    last_ms: list[float] = field(default_factory=list)
    median_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    read_ms: list[float] = field(default_factory=list)
    server_cpu_seconds: float = 0.0
    bad: int = 0


def text_frame(data: bytes) -> bytes:
    """A masked client text frame holding ``data``."""
    return Frame(Opcode.TEXT, data).serialize(mask=True)


class Peer:
    """One client WebSocket on a blocking socket: frames parsed as they arrive, pings answered,
    and for each payload ``{"i":k,...}`` seen, the kernel stamp of the ``recvmsg`` that completed
    its frame (and the probe's own clock right after that ``recvmsg``)."""

    def __init__(self, name: str, protocol: str, timeout: float) -> None:
        self.name = name
        self.centrifuge = protocol == "centrifuge"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.arrived: dict[int, tuple[int | None, int]] = {}
        """Payload seq -> (kernel stamp ns or None, probe time ns) of the read completing it."""
        self.replies: dict[int, dict[str, Any]] = {}
        """Centrifuge replies by command id, until :meth:`subscribe` has its two."""

    def open(self, port: int, path: str) -> None:
        """Connect to 127.0.0.1:``port`` and send the upgrade request (its answer: :meth:`upgraded`)."""
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(UPGRADE.format(path=path, port=port).encode())

    def upgraded(self) -> None:
        """Read the upgrade answer; it must be 101. Bytes after it start the WebSocket stream."""
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"{self.name}: closed during the handshake")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        if not status.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"{self.name}: upgrade refused: {status.decode(errors='replace')}")
        self.buf += rest
        self.parse(None, time.time_ns())

    def send_subscribe(self) -> None:
        """Centrifuge ``connect`` and ``subscribe`` in one frame (their replies: :meth:`subscribed`)."""
        self.sock.sendall(
            text_frame(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"%s"}}' % CHANNEL.encode())
        )

    def subscribed(self) -> None:
        """Read until both Centrifuge replies are in; an error reply raises."""
        while not {1, 2} <= self.replies.keys():
            self.read()
        for cid in (1, 2):
            if "error" in self.replies[cid]:
                raise ConnectionError(f"{self.name}: command {cid} failed: {self.replies[cid]['error']}")
        self.replies.clear()

    def read(self) -> None:
        """One ``recvmsg``: append, parse every complete frame, stamped with this read's time."""
        data, ancdata, _, _ = self.sock.recvmsg(RECV_BYTES, ANCILLARY_BYTES)
        now = time.time_ns()
        if not data:
            raise ConnectionError(f"{self.name}: closed by the server")
        stamp = None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanoseconds = TIMESPEC.unpack(payload[: TIMESPEC.size])
                stamp = seconds * 1_000_000_000 + nanoseconds
        self.buf += data
        self.parse(stamp, now)

    def parse(self, stamp: int | None, now: int) -> None:
        """Take every complete frame off the buffer (server frames are unmasked)."""
        buf = self.buf
        while len(buf) >= 2:
            first, second = buf[0], buf[1]
            if second & 0x80:
                raise ConnectionError(f"{self.name}: masked frame from the server")
            length, start = second & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + length:
                return
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            opcode = first & 0x0F
            if opcode in (Opcode.TEXT, Opcode.BINARY) and first & 0x80:
                self.message(payload, stamp, now)
            elif opcode == Opcode.PING:
                self.sock.sendall(Frame(Opcode.PONG, payload).serialize(mask=True))
            elif opcode == Opcode.CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                raise ConnectionError(f"{self.name}: server closed the WebSocket (code {code})")
            elif opcode != Opcode.PONG:
                raise ConnectionError(f"{self.name}: fragmented frame (opcode {opcode}): not expected here")

    def message(self, payload: bytes, stamp: int | None, now: int) -> None:
        """One text frame: a payload (plain), or newline-separated Centrifuge messages."""
        if self.centrifuge:
            for line in payload.split(b"\n"):
                if line == b"{}":  # the server's ping; an empty command is the pong
                    self.sock.sendall(text_frame(b"{}"))
                elif line.startswith(b'{"id":'):
                    reply = json.loads(line)
                    self.replies[int(reply["id"])] = reply
        pos = payload.find(MARK)
        while pos >= 0:
            end = pos + len(MARK)
            while end < len(payload) and 48 <= payload[end] <= 57:
                end += 1
            self.arrived[int(payload[pos + len(MARK) : end])] = (stamp, now)
            pos = payload.find(MARK, end)

    def wait(self, seq: int) -> tuple[int | None, int]:
        """Read until payload ``seq`` is here; its (kernel stamp, probe time)."""
        try:
            while seq not in self.arrived:
                self.read()
        except TimeoutError:
            raise TimeoutError(f"{self.name}: payload {seq} not received within {self.sock.gettimeout():g}s") from None
        return self.arrived.pop(seq)

    def wait_any(self, seqs: set[int], seconds: float) -> bool:
        """Read for up to ``seconds`` until one of ``seqs`` is here; whether one came."""
        deadline = time.monotonic() + seconds
        timeout = self.sock.gettimeout()
        try:
            while not seqs & self.arrived.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    self.read()
                except TimeoutError:
                    return False
            return True
        finally:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def connect_all(port: int, path: str, protocol: str, n: int, timeout: float) -> list[Peer]:
    """``n`` subscribers, upgraded (and subscribed, for Centrifuge), ``HANDSHAKE_BATCH`` at a time."""
    peers: list[Peer] = []
    try:
        for first in range(0, n, HANDSHAKE_BATCH):
            batch = [Peer(f"subscriber {i}", protocol, timeout) for i in range(first, min(n, first + HANDSHAKE_BATCH))]
            peers += batch
            for peer in batch:
                peer.open(port, path)
            for peer in batch:
                peer.upgraded()
            if protocol == "centrifuge":
                for peer in batch:
                    peer.send_subscribe()
                for peer in batch:
                    peer.subscribed()
    except BaseException:
        close_all(peers)
        raise
    return peers


def close_all(peers: Sequence[Peer]) -> None:
    """Close every socket."""
    for peer in peers:
        peer.close()


class Publisher:
    """The ``/publish`` WebSocket: each payload goes out as one masked text frame."""

    def __init__(self, port: int, pad: str, timeout: float) -> None:
        self.peer = Peer("publisher", "plain", timeout)
        self.peer.open(port, "/publish")
        self.peer.upgraded()
        self.pad = pad
        self.seq = 0

    def publish(self) -> tuple[int, int]:
        """Send the next payload; its seq and ``time.time_ns()`` right before the write."""
        self.answer_pings()
        seq, self.seq = self.seq, self.seq + 1
        frame = text_frame(b'{"i":%d,"p":"%s"}' % (seq, self.pad.encode()))
        t0 = time.time_ns()
        self.peer.sock.sendall(frame)
        return seq, t0

    def answer_pings(self) -> None:
        """Read whatever the server sent (its pings, answered by the parser) without waiting."""
        sock = self.peer.sock
        timeout = sock.gettimeout()
        sock.setblocking(False)
        try:
            while True:
                self.peer.read()
        except BlockingIOError:
            pass
        finally:
            sock.settimeout(timeout)


def barrier(publisher: Publisher, peers: Sequence[Peer]) -> None:
    """Publish warm-ups until every subscriber has one: then the server has registered them all."""
    sent = {publisher.publish()[0]}
    for peer in peers:
        for _ in range(WARMUP_ROUNDS):
            if peer.wait_any(sent, WARMUP_WAIT):
                break
            sent.add(publisher.publish()[0])
        else:
            raise TimeoutError(f"{peer.name}: no warm-up publication after {WARMUP_ROUNDS} tries")


def broadcast(publisher: Publisher, peers: Sequence[Peer], row: Row, read_delay: float) -> None:
    """One publication to every subscriber, timed by the kernel stamps; adds to ``row``."""
    for peer in peers:
        peer.arrived.clear()  # late warm-ups
    seq, t0 = publisher.publish()
    if read_delay:
        time.sleep(read_delay)
    got = [peer.wait(seq) for peer in peers]
    stamps = sorted(stamp - t0 for stamp, _ in got if stamp is not None)
    row.bad += sum(1 for stamp, now in got if stamp is None or not t0 <= stamp <= now)
    if stamps:
        row.last_ms.append(stamps[-1] / 1e6)
        row.median_ms.append(statistics.median(stamps) / 1e6)
        row.first_ms.append(stamps[0] / 1e6)
    row.read_ms.append((max(now for _, now in got) - t0) / 1e6)


def probe(opts: Options, port: int, server: str, n: int, pid: int) -> Row:
    """Connect ``n`` subscribers to the server on ``port`` (process ``pid``) and time the broadcasts."""
    _, _, path, protocol = SERVERS[server]
    row = Row(server, n)
    start = time.monotonic()
    peers = connect_all(port, path, protocol, n, opts.timeout)
    publisher: Publisher | None = None
    try:
        row.connect_seconds = time.monotonic() - start
        publisher = Publisher(port, "x" * opts.payload_bytes, opts.timeout)
        barrier(publisher, peers)
        time.sleep(PAUSE)
        cpu_before = cpu_seconds(pid)
        for _ in range(opts.broadcasts):
            broadcast(publisher, peers, row, opts.read_delay_ms / 1000)
            time.sleep(PAUSE)
        row.server_cpu_seconds = cpu_seconds(pid) - cpu_before
    finally:
        if publisher is not None:
            publisher.peer.close()
        close_all(peers)
    return row


async def run_one(opts: Options, server: str, n: int) -> Row:
    """A fresh ``server``, ``n`` subscribers, the broadcasts; stopped after."""
    port = fanout.free_port()
    async with server_process(opts.server_options(), server, port) as srv:
        return probe(opts, port, server, n, srv.pid)


def table(rows: Sequence[Row], broadcasts: int) -> str:
    """One line per (N, server)."""
    head = (
        f"{'server':<11}{'N':>6}{'connect s':>10}{'last p50/p99 ms':>17}{'median ms':>11}{'first ms':>10}"
        f"{'read ms':>9}{'srv CPU ms/bcast':>18}{'bad':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        last = fmt(quantile(r.last_ms, 0.5), ".2f") + " / " + fmt(quantile(r.last_ms, 0.99), ".2f")
        lines.append(
            f"{r.server:<11}{r.subscribers:>6}{r.connect_seconds:>10.2f}{last:>17}"
            f"{fmt(quantile(r.median_ms, 0.5), '.2f'):>11}{fmt(quantile(r.first_ms, 0.5), '.2f'):>10}"
            f"{fmt(quantile(r.read_ms, 0.5), '.2f'):>9}{1000 * r.server_cpu_seconds / broadcasts:>18.2f}{r.bad:>5}"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Read the command line into :class:`Options`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--servers", default="baseline,hub,tutorial,node-ws", help="comma list of: " + ", ".join(SERVERS)
    )
    parser.add_argument("--subscribers", default="1000,5000", help="comma list of N")
    parser.add_argument("--broadcasts", type=int, default=20, help="publications timed to the last subscriber")
    parser.add_argument(
        "--read-delay-ms",
        type=float,
        default=0.0,
        help="wait this long after each publish before reading (the kernel figures must not move)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds one socket read may wait")
    fanout.add_machine_arguments(parser)
    ns = parser.parse_args(argv)
    return Options(
        servers=delivery.parse_servers(parser, ns.servers),
        subscribers=tuple(int(s) for s in ns.subscribers.split(",")),
        broadcasts=ns.broadcasts,
        payload_bytes=ns.payload_bytes,
        read_delay_ms=ns.read_delay_ms,
        timeout=ns.timeout,
        server_cpu=ns.server_cpu,
        client_cpu=ns.client_cpu,
        ws=ns.ws,
        python=ns.python,
        node=ns.node,
    )


async def main(opts: Options) -> list[Row]:
    """Run every (N, server) pair and print the table."""
    shared = delivery.checked_machine(opts)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(fanout.versions(shared).split("\n")[0], flush=True)
    print(
        f"probe: Python {platform.python_version()}, plain sockets, SO_TIMESTAMPNS stamps (kernel"
        f" {platform.release()}); pinned to CPU {opts.client_cpu}",
        flush=True,
    )
    rows = []
    for n in opts.subscribers:
        for server in opts.servers:
            print(f"running {server} N={n} ...", file=sys.stderr, flush=True)
            rows.append(await run_one(opts, server, n))
    print(
        f"\none publication (~{opts.payload_bytes + 20}-byte payload) -> N idle subscribers, {opts.broadcasts}"
        f" times, {PAUSE * 1000:g} ms apart; ms from the publisher's write to the kernel's receive stamp"
        + (f"; reads start {opts.read_delay_ms:g} ms after each publish" if opts.read_delay_ms else "")
        + "\n"
    )
    print(table(rows, opts.broadcasts))
    if any(r.bad for r in rows):
        print("\nbad > 0: some stamps were missing, before the publish or after the probe's read: figures suspect")
    print(f"\nreproduce: {opts.command()}")
    return rows


if __name__ == "__main__":
    options = parse_args()
    os.sched_setaffinity(0, {options.client_cpu})
    asyncio.run(main(options))
