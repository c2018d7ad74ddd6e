"""Per-delivery benchmark: what one message to one subscriber costs when nothing can be batched.

For every N (default 1000, 5000) and every server it starts a fresh server on 127.0.0.1 pinned to
one core (``taskset -c 0``), connects N subscribers from ``delivery.mjs`` pinned to another core
(``taskset -c 1``) and measures, in one run per (server, N):

* ``connect s``: time for N clients to connect and subscribe (100 at a time); ``us/conn``: the
  server's CPU (user + system) per connection meanwhile, ``gen%``: the load generator's CPU
  meanwhile (near 100: the client, not the server, sets the pace).
* ``bcast p50/p99 ms``: one publication to N idle subscribers, until the last one got it,
  repeated ``--broadcasts`` times (100 ms apart).
* ``windowed del/s``: the publisher keeps at most ``--window`` messages in flight and publishes
  the next when one has reached every subscriber, for ``--seconds``.
* ``usr/sys us/del``: the server's CPU time (``utime``/``stime`` from ``/proc``) over the
  windowed phase per delivery, user and kernel apart.
* ``paced p50/p99 ms``: ``--rate`` deliveries/s offered (rate / N messages/s, evenly spaced),
  latency of every delivery, for ``--seconds``.
* ``RSS/conn KiB``: server ``VmRSS`` after N connected (and ``--idle-seconds`` idle, with the
  servers' pings running if that is longer than their interval) minus before, / N.
* ``gen%``: the load generator's CPU over the windowed phase; ``!gen`` above 85%: that row may
  be client-bound.

Servers: ``baseline`` (the FastAPI docs ``ConnectionManager``, ``baseline_app.py``, on plain
uvicorn), ``hub`` (our Centrifuge protocol endpoint) and ``tutorial`` (our tutorial API,
``hub.connection``), both in ``realtime_app.py`` served by ``fastapi_realtime.run`` (our
WebSocket protocol); ``hub-asgi`` and ``tutorial-asgi``, the same app on plain uvicorn (its own
WebSocket protocol, the ASGI path); all on uvloop + httptools; and two reference floors:
``websockets`` (its ``broadcast()``, ``websockets_server.py``) and ``node-ws`` (Node.js ``ws``,
``ws_server.mjs``). Every run is bounded (``--deadline``).

Run from the repository root (project installed, ``npm ci --prefix bench`` once)::

    python bench/delivery.py            # about 3 minutes; --help for the knobs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import fanout
from fanout import fmt
from procstat import CpuSampler, rss_kib

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN = BENCH_DIR / "delivery.mjs"
SERVERS = {
    # name -> (kind, target, subscriber path, load generator protocol)
    "baseline": ("uvicorn", "baseline_app:app", "/ws", "plain"),
    "hub": ("python", "realtime_app.py", "/connection/websocket", "centrifuge"),
    "tutorial": ("python", "realtime_app.py", "/ws", "plain"),
    # The same app under plain uvicorn (its own WebSocket protocol, the ASGI path):
    "hub-asgi": ("uvicorn", "realtime_app:app", "/connection/websocket", "centrifuge"),
    "tutorial-asgi": ("uvicorn", "realtime_app:app", "/ws", "plain"),
    "websockets": ("python", "websockets_server.py", "/ws", "plain"),
    "node-ws": ("node", "ws_server.mjs", "/ws", "plain"),
}
LOADGEN_SATURATED_PERCENT = 85.0


@dataclass(frozen=True)
class Options:
    """Everything that shapes a run; printed back as the command that reproduces it."""

    servers: tuple[str, ...]
    subscribers: tuple[int, ...]
    broadcasts: int
    window: int
    rate: float
    seconds: float
    phases: str
    idle_seconds: float
    payload_bytes: int
    server_cpu: int
    client_cpu: int
    ws: str
    python: str
    node: str
    deadline: float
    profile: str | None

    def command(self) -> str:
        """The exact command line that repeats this benchmark."""
        return shlex.join([
            self.python, str(Path(__file__).resolve()),
            "--servers", ",".join(self.servers), "--subscribers", ",".join(map(str, self.subscribers)),
            "--broadcasts", str(self.broadcasts), "--window", str(self.window), "--rate", f"{self.rate:g}",
            "--seconds", f"{self.seconds:g}", "--phases", self.phases, "--idle-seconds", f"{self.idle_seconds:g}",
            "--payload-bytes", str(self.payload_bytes), "--server-cpu", str(self.server_cpu),
            "--client-cpu", str(self.client_cpu), "--ws", self.ws, "--node", self.node,
            "--deadline", f"{self.deadline:g}", *(["--profile", self.profile] if self.profile else []),
        ])  # fmt: skip


@dataclass
class Row:
    """What one (server, N) run measured."""

    server: str
    subscribers: int
    connect_seconds: float = 0.0
    connect_server_seconds: float | None = None
    """Server CPU (user + system) while the N clients connected and subscribed."""
    connect_gen_percent: float | None = None
    """Load generator CPU while the N clients connected, % of its core."""
    rss_per_connection_kib: float = 0.0
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu: dict[str, float | None] = field(default_factory=dict)
    """``<phase>_<process>_<user|system|total>`` -> CPU seconds over that phase's window."""
    server_pid: int = 0

    def per_delivery_us(self, kind: str) -> float | None:
        """Server CPU (``user``, ``system`` or ``total``) per delivery in the windowed phase, in µs."""
        used, phase = self.cpu.get(f"windowed_server_{kind}"), self.phases.get("windowed")
        if used is None or not phase or not phase["deliveries"]:
            return None
        return 1e6 * used / int(phase["deliveries"])

    def gen_percent(self) -> float | None:
        """Load generator CPU over the windowed phase, % of its core."""
        used, phase = self.cpu.get("windowed_loadgen_total"), self.phases.get("windowed")
        if used is None or not phase:
            return None
        return 100 * used / ((float(phase["end_ms"]) - float(phase["start_ms"])) / 1000)


@contextlib.asynccontextmanager
async def server_process(opts: Options, server: str, port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """A fresh ``server`` on 127.0.0.1:``port`` pinned to ``opts.server_cpu``; stopped on exit."""
    kind, target, _, _ = SERVERS[server]
    pin = ["taskset", "-c", str(opts.server_cpu)]
    if kind == "uvicorn":
        argv = [
            *pin, opts.python, "-m", "uvicorn", target, "--app-dir", str(BENCH_DIR),
            "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--ws", opts.ws, "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    elif kind == "python":
        argv = [*pin, opts.python, str(BENCH_DIR / target), str(port)]
    else:
        argv = [*pin, opts.node, str(BENCH_DIR / target), str(port)]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, cwd=BENCH_DIR)
    try:
        await fanout.wait_http_ready(port, timeout=30)
        yield proc
    finally:
        await fanout.stop_process(proc, grace=10)


async def next_record(gen: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    """The load generator's next JSON line; its ``error`` record raises."""
    assert gen.stdout is not None
    line = await asyncio.wait_for(gen.stdout.readline(), timeout)
    if not line:
        raise RuntimeError(f"load generator exited (code {await gen.wait()})")
    record: dict[str, Any] = json.loads(line)
    if record["event"] == "error":
        raise RuntimeError(f"load generator: {record['error']}")
    return record


async def run_one(opts: Options, server: str, n: int) -> Row:
    """One server, ``n`` subscribers, every phase; returns what it measured."""
    _, _, sub_path, protocol = SERVERS[server]
    port = fanout.free_port()
    row = Row(server, n)
    async with server_process(opts, server, port) as srv:
        row.server_pid = srv.pid
        await asyncio.sleep(0.5)
        rss_before = rss_kib(srv.pid)
        argv = [
            "taskset", "-c", str(opts.client_cpu), opts.node, str(LOADGEN),
            "--sub-url", f"ws://127.0.0.1:{port}{sub_path}", "--pub-url", f"ws://127.0.0.1:{port}/publish",
            "--protocol", protocol, "--subscribers", str(n), "--broadcasts", str(opts.broadcasts),
            "--window", str(opts.window), "--rate", f"{opts.rate:g}", "--seconds", f"{opts.seconds:g}",
            "--phases", opts.phases, "--payload-bytes", str(opts.payload_bytes), "--deadline", f"{opts.deadline:g}",
        ]  # fmt: skip
        gen = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=BENCH_DIR)
        sampler = CpuSampler({"server": srv.pid, "loadgen": gen.pid})
        sampler.sample()
        sampling = asyncio.create_task(sampler.run())
        try:
            connected = await next_record(gen, opts.deadline)
            row.connect_seconds = float(connected["connect_seconds"])
            await asyncio.sleep(0.2)  # let the samples pass the window's end
            sampler.sample()
            start, end = connected["start_ms"] / 1000, connected["end_ms"] / 1000
            row.connect_server_seconds = sampler.seconds("server", start, end)
            row.connect_gen_percent = sampler.percent_of_core("loadgen", start, end)
            await asyncio.sleep(opts.idle_seconds)
            row.rss_per_connection_kib = (rss_kib(srv.pid) - rss_before) / n
            profiler = await start_profiler(opts, server, n, srv.pid)
            assert gen.stdin is not None
            gen.stdin.write(b"go\n")
            await gen.stdin.drain()
            while (record := await next_record(gen, opts.deadline))["event"] != "done":
                await asyncio.sleep(0.2)  # let the samples pass the window's end (the client waits)
                sampler.sample()
                name, start, end = record["phase"], record["start_ms"] / 1000, record["end_ms"] / 1000
                row.phases[name] = record
                for proc in ("server", "loadgen"):
                    for kind in ("user", "system", "total"):
                        key = proc if kind == "total" else f"{proc}_{kind}"
                        row.cpu[f"{name}_{proc}_{kind}"] = sampler.seconds(key, start, end)
                gen.stdin.write(b"next\n")
                await gen.stdin.drain()
            if profiler is not None:
                await asyncio.wait_for(profiler.wait(), opts.seconds + 30)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            try:
                await asyncio.wait_for(gen.wait(), 15)
            except TimeoutError:
                await fanout.stop_process(gen, grace=2)
    return row


async def start_profiler(opts: Options, server: str, n: int, pid: int) -> asyncio.subprocess.Process | None:
    """With ``--profile DIR``: py-spy recording a Python server for ``--seconds`` from now, as
    collapsed stacks in ``DIR/<server>-<n>.txt`` (None for Node, or without ``--profile``)."""
    if not opts.profile or SERVERS[server][0] == "node":
        return None
    out = Path(opts.profile) / f"{server}-{n}.txt"
    py_spy = shutil.which("py-spy", path=str(Path(opts.python).parent)) or "py-spy"
    argv = [py_spy, "record", "--pid", str(pid), "--duration", f"{max(1, int(opts.seconds))}"]
    argv += ["--rate", "250", "--format", "raw", "--output", str(out), "--nonblocking"]
    return await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL)


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` (nearest rank), or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(rows: Sequence[Row]) -> str:
    """The side-by-side table, one line per (N, server)."""
    head = (
        f"{'server':<11}{'N':>6}{'connect s':>10}{'us/conn gen%':>14}{'bcast p50/p99 ms':>18}{'windowed del/s':>15}"
        f"{'usr/sys us/del':>16}{'total us':>9}{'paced p50/p99 ms':>18}{'lost':>6}{'RSS/conn KiB':>13}{'gen%':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        bcast = r.phases.get("broadcast", {}).get("last_ms", [])
        win = r.phases.get("windowed", {})
        paced = r.phases.get("paced", {})
        lat = paced.get("latencies_ms", {})
        lost = sum(int(p.get("expected", 0)) - int(p.get("deliveries", 0)) for p in (win, paced) if "expected" in p)
        gen = r.gen_percent()
        conn_us = None if r.connect_server_seconds is None else 1e6 * r.connect_server_seconds / r.subscribers
        flag = " !gen" if gen is not None and gen > LOADGEN_SATURATED_PERCENT else ""
        lines.append(
            f"{r.server:<11}{r.subscribers:>6}{r.connect_seconds:>10.2f}"
            f"{fmt(conn_us, '.0f') + ' ' + fmt(r.connect_gen_percent, '.0f'):>14}"
            f"{fmt(quantile(bcast, 0.5), '.1f') + ' / ' + fmt(quantile(bcast, 0.99), '.1f'):>18}"
            f"{fmt(win.get('per_second'), ',.0f'):>15}"
            f"{fmt(r.per_delivery_us('user'), '.2f') + ' / ' + fmt(r.per_delivery_us('system'), '.2f'):>16}"
            f"{fmt(r.per_delivery_us('total'), '.2f'):>9}"
            f"{fmt(lat.get('p50'), '.1f') + ' / ' + fmt(lat.get('p99'), '.1f'):>18}"
            f"{lost:>6}{r.rss_per_connection_kib:>13.1f}{fmt(gen, '.0f'):>6}{flag}"
        )
    return "\n".join(lines)


def parse_servers(parser: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    """``--servers``: names of :data:`SERVERS`, comma-separated (an unknown one is an error)."""
    servers = tuple(s for s in text.split(",") if s)
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    return servers


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Read the command line into :class:`Options`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma list of: " + ", ".join(SERVERS))
    parser.add_argument("--subscribers", default="1000,5000", help="comma list of N")
    parser.add_argument("--broadcasts", type=int, default=20, help="single broadcasts timed to the last subscriber")
    parser.add_argument("--window", type=int, default=4, help="messages in flight in the windowed phase")
    parser.add_argument("--rate", type=float, default=5000, help="deliveries/s offered in the paced phase")
    parser.add_argument("--seconds", type=float, default=5, help="length of the windowed and the paced phase")
    parser.add_argument(
        "--phases",
        default="broadcast,windowed,paced",
        help="comma list of broadcast, windowed, paced ('none': connect and measure RSS only)",
    )
    parser.add_argument("--idle-seconds", type=float, default=2, help="idle wait before the RSS reading")
    fanout.add_machine_arguments(parser)
    parser.add_argument("--deadline", type=float, default=120, help="seconds one load generator step may take")
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="py-spy (in the server's venv) records each Python server for --seconds from the first phase;"
        " use with --phases windowed",
    )
    ns = parser.parse_args(argv)
    return Options(
        servers=parse_servers(parser, ns.servers),
        subscribers=tuple(int(s) for s in ns.subscribers.split(",")),
        broadcasts=ns.broadcasts,
        window=ns.window,
        rate=ns.rate,
        seconds=ns.seconds,
        phases=ns.phases,
        idle_seconds=ns.idle_seconds,
        payload_bytes=ns.payload_bytes,
        server_cpu=ns.server_cpu,
        client_cpu=ns.client_cpu,
        ws=ns.ws,
        python=ns.python,
        node=ns.node,
        deadline=ns.deadline,
        profile=ns.profile,
    )


class MachineOptions(Protocol):
    """The options that say how servers run on this machine (``fanout.add_machine_arguments``)."""

    @property
    def ws(self) -> str: ...
    @property
    def python(self) -> str: ...
    @property
    def node(self) -> str: ...
    @property
    def server_cpu(self) -> int: ...
    @property
    def client_cpu(self) -> int: ...


def checked_machine(opts: MachineOptions) -> fanout.Options:
    """``fanout``'s options for the machine ``opts`` describe, once its prerequisites (Node.js
    packages, interpreters, cores) are checked; they also print the versions."""
    shared = fanout.parse_args([
        "--servers", "baseline", "--ws", opts.ws, "--python", opts.python, "--node", opts.node,
        "--server-cpu", str(opts.server_cpu), "--client-cpu", str(opts.client_cpu),
    ])  # fmt: skip
    fanout.check_prerequisites(shared)
    return shared


async def main(opts: Options) -> list[Row]:
    """Run every (N, server) pair and print the table."""
    shared = checked_machine(opts)
    if opts.profile:
        os.makedirs(opts.profile, exist_ok=True)
    print(fanout.versions(shared), flush=True)
    rows = []
    for n in opts.subscribers:
        for server in opts.servers:
            print(f"running {server} N={n} ...", file=sys.stderr, flush=True)
            rows.append(await run_one(opts, server, n))
    print(
        f"\none publisher -> N subscribers, ~{opts.payload_bytes + 20}-byte payloads, one message per frame;"
        f" windowed: {opts.window} in flight for {opts.seconds:g}s; paced: {opts.rate:g} deliveries/s offered"
        f" for {opts.seconds:g}s; bcast: last delivery of one publication, {opts.broadcasts} times\n"
    )
    print(table(rows))
    if any((r.gen_percent() or 0) > LOADGEN_SATURATED_PERCENT for r in rows):
        print(f"\n!gen: load generator above {LOADGEN_SATURATED_PERCENT:g}% of its core: that server may go faster")
    print(f"\nreproduce: {opts.command()}")
    return rows


if __name__ == "__main__":
    options = parse_args()
    os.sched_setaffinity(0, {options.client_cpu})
    asyncio.run(main(options))
