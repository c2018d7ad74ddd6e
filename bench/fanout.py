"""Fan-out benchmark: one publisher, N subscribers on one channel, ours against the docs baseline.

For every N (default 100, 1000, 5000) and every server (``baseline``: the FastAPI docs
``ConnectionManager`` in ``baseline_app.py``; ``realtime``: our hub in ``realtime_app.py``) it
starts a fresh uvicorn process on 127.0.0.1 pinned to one core (``taskset -c 0``), connects N
subscribers from a load generator pinned to another core (``taskset -c 1``), publishes M
messages through a publisher WebSocket at full speed (or at ``--rate``), and reports
deliveries/s, publish-to-receive latency (p50/p99, from a timestamp in each payload), lost
messages, the server's RSS per connection and the CPU use of both processes over the measured
window. Each run is bounded (``--deadline``); everything stops by itself.

Why the load generator is Node.js (``loadgen.mjs``, the ``ws`` package)
-------------------------------------------------------------------------
The client has to receive every delivery on one core without becoming the bottleneck. Measured
here (2-core AMD EPYC VM, server on core 0, client on core 1, N=1000), as load-generator CPU
per delivery, user + system:

* one message per frame (the baseline): Node ``ws`` 8.6-9.1 us with ``JSON.parse`` per message
  (4.3-4.9 us of it in the kernel), 5.4-6.2 us with the string scan below; Python
  ``picows`` + uvloop 3.9-8.6 us; Python ``websockets`` 17 (asyncio client, uvloop) 9.3 us.
* Centrifuge frames batching ~30-300 messages (ours): Node ``ws`` ~0.8 us, ``picows`` ~0.9 us.

So a low-overhead Python client would do about as well, and even the plain ``websockets``
client costs what Node did before the string scan: no option is clearly cheaper. Node was kept
because it is as cheap as the best Python option on both frame shapes, it adds no dependency to
the project's venv (the project already installs npm packages for its centrifuge-js tests), and
it shares no code with the server's uvicorn/websockets stack, so it cannot share a bug or a
fast path with what it measures. The client reads the timestamp out of each payload with a
string scan rather than a full ``JSON.parse`` (the payloads are ours, their shape is fixed);
anything unexpected falls back to ``JSON.parse``.

Every row prints the client's CPU (``gen CPU%``) and is flagged ``!gen`` above 85%. In three
default runs it used 60-95% of its core on the baseline rows (one ~100-byte frame per message,
~80-125k frames/s) and 21-60% on ours. Baseline rows do get flagged: there both processes are
near a full core, but the server stays at 93-98% (it is not waiting on the client), so those
rows are server-bound within a few percent.

Reading the numbers
-------------------
* ``deliveries/s``: messages received, summed over subscribers / (last receipt - first publish).
* ``p50/p99 ms``: publish-to-receive latency over every delivery (publisher and subscribers
  share one clock in the load generator).
* ``lost``: N x M minus deliveries, when a run ends by ``--drain-timeout`` or ``--deadline``.
* ``srv CPU%``/``gen CPU%``: ``utime + stime`` of each process over that window, % of one core
  (all threads; sampled from ``/proc`` every 50 ms and interpolated to the window's edges).
* ``RSS/conn KiB``: server ``VmRSS`` after N subscribers connected minus before, / N.
* ``!noisy``: other programs or hypervisor steal took more than 10% of a pinned core over the
  window. The details line shows that share for each core, the interrupt time on each core
  (mostly the loopback TCP stack: 15-25% of each core when the baseline sends one small frame
  per message; how much of it also shows in a process's system time depends on the kernel's
  accounting), and ``max_stall``, the longest time no subscriber received anything.

Latency at full speed is queueing: the publisher pushes all M messages at once, so the later
ones wait behind the earlier ones and p50/p99 grow with M. Compare servers at equal M, or pass
``--rate`` for latency at a fixed load.

Run from the repository root, with the project installed in the interpreter's environment
(``pip install -e .``) and the load generator's one npm package installed once:
    npm ci --prefix bench
    python bench/fanout.py            # about 2 minutes; --help for the knobs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procstat import CpuSampler, rss_kib

BENCH_DIR = Path(__file__).resolve().parent
LOADGEN = BENCH_DIR / "loadgen.mjs"
SERVERS = {
    # name -> (uvicorn app, subscriber path, publisher path, load generator protocol)
    "baseline": ("baseline_app:app", "/ws", "/publish", "plain"),
    "realtime": ("realtime_app:app", "/connection/websocket", "/publish", "centrifuge"),
}
LOADGEN_SATURATED_PERCENT = 85.0
"""Load generator CPU (% of its core) above which its numbers are flagged as unreliable."""
NOISE_PERCENT = 10.0
"""Task time on a pinned core (% of the window) not used by the process pinned there, above
which a row is flagged: other programs or the hypervisor took that much of the core."""


@dataclass(frozen=True)
class Options:
    """Everything that shapes a run; printed back as the command that reproduces it."""

    servers: tuple[str, ...]
    subscribers: tuple[int, ...]
    messages: tuple[int, ...]
    rate: float
    payload_bytes: int
    server_cpu: int
    client_cpu: int
    ws: str
    python: str
    node: str
    drain_timeout: float
    deadline: float
    deflate: bool
    json_out: str | None

    def command(self) -> str:
        """The exact command line that repeats this benchmark."""
        argv = [
            self.python,
            str(Path(__file__).resolve()),
            "--servers", ",".join(self.servers),
            "--subscribers", ",".join(map(str, self.subscribers)),
            "--messages", ",".join(map(str, self.messages)),
            "--rate", f"{self.rate:g}",
            "--payload-bytes", str(self.payload_bytes),
            "--server-cpu", str(self.server_cpu),
            "--client-cpu", str(self.client_cpu),
            "--ws", self.ws,
            "--node", self.node,
            "--drain-timeout", f"{self.drain_timeout:g}",
            "--deadline", f"{self.deadline:g}",
        ]  # fmt: skip
        if self.deflate:
            argv.append("--deflate")
        return shlex.join(argv)


@dataclass(frozen=True)
class RunResult:
    """What one (server, N) run measured."""

    server: str
    subscribers: int
    messages: int
    loadgen: dict[str, Any]
    """The load generator's ``result`` record (deliveries, latency, losses)."""
    ready: dict[str, Any]
    """The load generator's ``ready`` record (connections made or failed)."""
    rss_before_kib: int
    rss_connected_kib: int
    rss_end_kib: int
    server_cpu_percent: float | None
    loadgen_cpu_percent: float | None
    server_core_percent: float | None
    """Task time on the server's core over the window, whoever ran there (with steal)."""
    client_core_percent: float | None
    """Task time on the load generator's core over the window, whoever ran there (with steal)."""
    server_core_irq_percent: float | None
    """Interrupt time on the server's core over the window (the loopback TCP stack, mostly)."""
    client_core_irq_percent: float | None
    """Interrupt time on the load generator's core over the window."""

    @property
    def noise_percent(self) -> float:
        """The larger share of either pinned core taken by other programs or the hypervisor."""
        pairs = (
            (self.server_core_percent, self.server_cpu_percent),
            (self.client_core_percent, self.loadgen_cpu_percent),
        )
        return max((core - own for core, own in pairs if core is not None and own is not None), default=0.0)

    @property
    def rss_per_connection_kib(self) -> float:
        """Server memory added per connected subscriber, in KiB."""
        connected = max(1, int(self.ready["connected"]))
        return (self.rss_connected_kib - self.rss_before_kib) / connected


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_http_ready(port: int, timeout: float) -> None:
    """Wait until the server on ``port`` answers an HTTP request (any status)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), timeout)
            writer.close()
            await writer.wait_closed()
            if status.startswith(b"HTTP/1.1"):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on port {port} not ready after {timeout:g}s")
        await asyncio.sleep(0.05)


async def stop_process(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGINT ``proc`` (uvicorn's graceful stop), then SIGKILL it after ``grace`` seconds."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def uvicorn_server(
    opts: Options, server: str, port: int, env: dict[str, str] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A fresh uvicorn process serving ``server``'s app on 127.0.0.1:``port``, pinned to
    ``opts.server_cpu`` (``env``: extra environment variables); ready on entry, stopped on exit."""
    app = SERVERS[server][0]
    argv = [
        "taskset", "-c", str(opts.server_cpu),
        opts.python, "-m", "uvicorn", app,
        "--app-dir", str(BENCH_DIR),
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--ws", opts.ws,
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    try:
        await wait_http_ready(port, timeout=30)
        yield proc
    finally:
        await stop_process(proc, grace=10)


async def read_event(proc: asyncio.subprocess.Process, event: str, timeout: float) -> dict[str, Any]:
    """The next JSON record from the load generator, which must be ``event``."""
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if not line:
        raise RuntimeError(f"load generator exited (code {await proc.wait()}) before {event!r}")
    record: dict[str, Any] = json.loads(line)
    if record.get("event") != event:
        raise RuntimeError(f"expected {event!r} from the load generator, got {record}")
    return record


async def run_one(opts: Options, server: str, n: int, m: int) -> RunResult:
    """Run one server with ``n`` subscribers and ``m`` messages; return what it measured."""
    _, sub_path, pub_path, protocol = SERVERS[server]
    port = free_port()
    async with uvicorn_server(opts, server, port) as srv:
        await asyncio.sleep(0.5)  # let the server settle after its first request
        rss_before = rss_kib(srv.pid)
        argv = [
            "taskset", "-c", str(opts.client_cpu), opts.node, str(LOADGEN),
            "--sub-url", f"ws://127.0.0.1:{port}{sub_path}",
            "--pub-url", f"ws://127.0.0.1:{port}{pub_path}",
            "--protocol", protocol,
            "--subscribers", str(n), "--messages", str(m), "--rate", f"{opts.rate:g}",
            "--payload-bytes", str(opts.payload_bytes),
            "--drain-timeout", f"{opts.drain_timeout:g}", "--deadline", f"{opts.deadline:g}",
        ]  # fmt: skip
        if opts.deflate:
            argv.append("--deflate")
        gen = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=BENCH_DIR)
        sampler_task: asyncio.Task[None] | None = None
        try:
            ready = await read_event(gen, "ready", timeout=opts.deadline)
            rss_connected = rss_kib(srv.pid)
            sampler = CpuSampler(
                {"server": srv.pid, "loadgen": gen.pid},
                cores={"server_core": opts.server_cpu, "client_core": opts.client_cpu},
            )
            sampler.sample()
            sampler_task = asyncio.create_task(sampler.run())
            assert gen.stdin is not None
            gen.stdin.write(b"go\n")
            await gen.stdin.drain()
            result = await read_event(gen, "result", timeout=opts.deadline + 30)
            sampler.sample()
            rss_end = rss_kib(srv.pid)
            start, end = result["window_start_ms"] / 1000, result["window_end_ms"] / 1000
            return RunResult(
                server=server,
                subscribers=n,
                messages=m,
                loadgen=result,
                ready=ready,
                rss_before_kib=rss_before,
                rss_connected_kib=rss_connected,
                rss_end_kib=rss_end,
                server_cpu_percent=sampler.percent_of_core("server", start, end),
                loadgen_cpu_percent=sampler.percent_of_core("loadgen", start, end),
                server_core_percent=sampler.percent_of_core("server_core", start, end),
                client_core_percent=sampler.percent_of_core("client_core", start, end),
                server_core_irq_percent=sampler.percent_of_core("server_core_irq", start, end),
                client_core_irq_percent=sampler.percent_of_core("client_core_irq", start, end),
            )
        finally:
            if sampler_task is not None:
                sampler_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler_task
            try:
                await asyncio.wait_for(gen.wait(), 15)
            except TimeoutError:
                await stop_process(gen, grace=2)


def fmt(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``, or a dash when it is missing."""
    return "-" if value is None else format(value, spec)


def table(results: Sequence[RunResult]) -> str:
    """The results side by side, and ours against the baseline for each N."""
    head = (
        f"{'server':<9} {'N':>5} {'msgs':>5} {'deliveries/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'lost':>7} {'srv CPU%':>8} {'gen CPU%':>8} {'RSS/conn KiB':>12} {'RSS end MiB':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        g, lat = r.loadgen, r.loadgen["latency_ms"]
        flag = " !gen" if (r.loadgen_cpu_percent or 0) > LOADGEN_SATURATED_PERCENT else ""
        flag += " !noisy" if r.noise_percent > NOISE_PERCENT else ""
        lines.append(
            f"{r.server:<9} {r.subscribers:>5} {r.messages:>5} {g['deliveries_per_second']:>12,.0f} "
            f"{fmt(lat['p50'], '8.1f')} {fmt(lat['p99'], '8.1f')} {g['lost']:>7} "
            f"{fmt(r.server_cpu_percent, '8.0f')} {fmt(r.loadgen_cpu_percent, '8.0f')} "
            f"{r.rss_per_connection_kib:>12.1f} {r.rss_end_kib / 1024:>11.1f}{flag}"
        )
    by_key = {(r.server, r.subscribers): r for r in results}
    ratios = []
    for n in sorted({r.subscribers for r in results}):
        ours, base = by_key.get(("realtime", n)), by_key.get(("baseline", n))
        if ours is None or base is None:
            continue
        speed = ours.loadgen["deliveries_per_second"] / max(base.loadgen["deliveries_per_second"], 1e-9)
        p99_ours, p99_base = ours.loadgen["latency_ms"]["p99"], base.loadgen["latency_ms"]["p99"]
        p99 = f"{p99_ours / p99_base:.2f}x" if p99_ours and p99_base else "-"
        ratios.append(f"N={n:<5} realtime/baseline: deliveries/s {speed:.2f}x, p99 latency {p99}")
    if ratios:
        lines += ["", *ratios]
    return "\n".join(lines)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(0.0, a - b)


def details(r: RunResult) -> str:
    """One line of the facts behind a row: how the run ended and what it lost."""
    g = r.loadgen
    return (
        f"{r.server:<9} N={r.subscribers:<5} connected={r.ready['connected']} failed={r.ready['failed']} "
        f"connect={r.ready['connect_seconds']:.1f}s publish={g['publish_seconds']:.2f}s "
        f"window={g['window_seconds']:.2f}s ending={g['ending']} delivered={g['delivered']}/{g['expected']} "
        f"frames={g['frames']} max_stall={g['max_stall_ms']:.0f}ms "
        f"closed_early={g['closed_early']}{' ' + str(g['close_codes']) if g['close_codes'] else ''}"
        f"{' warmup_missing=' + str(r.ready['warmup_missing']) if r.ready['warmup_missing'] else ''}\n"
        f"{'':<10}others+steal: server core {fmt(_diff(r.server_core_percent, r.server_cpu_percent), '.0f')}%, "
        f"client core {fmt(_diff(r.client_core_percent, r.loadgen_cpu_percent), '.0f')}%; "
        f"irq: server core {fmt(r.server_core_irq_percent, '.0f')}%, "
        f"client core {fmt(r.client_core_irq_percent, '.0f')}%"
    )


def versions(opts: Options) -> str:
    """The software under test, for the header (with the class uvicorn's ``--ws`` resolves to)."""
    probe = (
        "import sys, importlib.metadata as m, platform, uvicorn.config as c, uvicorn.importer as i;"
        "ws = i.import_from_string(c.WS_PROTOCOLS.get(sys.argv[1], sys.argv[1]));"
        "print(platform.python_version(), getattr(ws, '__name__', ws),"
        " *(m.version(p) for p in ('uvicorn', 'fastapi', 'websockets')))"
    )
    out = subprocess.run([opts.python, "-c", probe, opts.ws], capture_output=True, text=True, check=True)
    py, ws_class, uvicorn, fastapi, websockets = out.stdout.split()
    node = subprocess.run([opts.node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    ws = json.loads((BENCH_DIR / "node_modules" / "ws" / "package.json").read_text())["version"]
    return (
        f"server: Python {py}, uvicorn {uvicorn} (--ws {opts.ws} = {ws_class}, uvloop, httptools), "
        f"fastapi {fastapi}, websockets {websockets}; pinned to CPU {opts.server_cpu}\n"
        f"load generator: node {node}, ws {ws}; pinned to CPU {opts.client_cpu}"
    )


def check_prerequisites(opts: Options) -> None:
    """Fail early, with the fix, when something the run needs is missing."""
    if shutil.which("taskset") is None:
        sys.exit("fanout: taskset not found (apt-get install util-linux)")
    if shutil.which(opts.node) is None:
        sys.exit(f"fanout: {opts.node} not found (Node.js >= 20 is needed for the load generator)")
    if not (BENCH_DIR / "node_modules" / "ws").is_dir():
        sys.exit(f"fanout: run `npm ci --prefix {BENCH_DIR}` first")
    if max(opts.server_cpu, opts.client_cpu) >= (os.cpu_count() or 1) or opts.server_cpu == opts.client_cpu:
        sys.exit("fanout: --server-cpu and --client-cpu must be two different existing CPUs")
    if "realtime" in opts.servers:
        probe = subprocess.run([opts.python, "-c", "import fastapi_realtime"], capture_output=True, text=True)
        if probe.returncode != 0:
            sys.exit(f"fanout: {opts.python} cannot import fastapi_realtime:\n{probe.stderr.strip()}")


def add_machine_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark here shares: payload size, the two pinned cores, the servers'
    ``--ws``, interpreter and the Node.js binary (``delivery.py`` uses them too)."""
    parser.add_argument("--payload-bytes", type=int, default=64, help="padding bytes in each payload")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--ws", default="auto", help="uvicorn --ws implementation for the uvicorn servers")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the Python servers")
    parser.add_argument("--node", default="node")


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Read the command line into :class:`Options`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--servers", default="baseline,realtime", help="comma list of: " + ", ".join(SERVERS))
    parser.add_argument("--subscribers", default="100,1000,5000", help="comma list of N")
    parser.add_argument(
        "--messages",
        default=None,
        help="comma list of messages per N, one per --subscribers (default: --deliveries / N, at least 20)",
    )
    parser.add_argument("--deliveries", type=int, default=2_000_000, help="deliveries per run when --messages is unset")
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s the publisher sends (0: full speed)")
    add_machine_arguments(parser)
    parser.add_argument(
        "--drain-timeout", type=float, default=15.0, help="seconds without a delivery that end a run (rest: lost)"
    )
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds one load generator run may take")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="subscribers offer permessage-deflate, as browsers do (default: off; inflating one frame per"
        " message then makes the client the limit on the baseline rows, see gen CPU%%)",
    )
    parser.add_argument("--json", dest="json_out", default=None, help="also write every record to this file")
    ns = parser.parse_args(argv)
    servers = tuple(s for s in ns.servers.split(",") if s)
    if unknown := set(servers) - set(SERVERS):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    subscribers = tuple(int(s) for s in ns.subscribers.split(","))
    if ns.messages is None:
        messages = tuple(max(20, ns.deliveries // n) for n in subscribers)
    else:
        messages = tuple(int(s) for s in ns.messages.split(","))
        if len(messages) != len(subscribers):
            parser.error("--messages needs one count per --subscribers entry")
    return Options(
        servers=servers,
        subscribers=subscribers,
        messages=messages,
        rate=ns.rate,
        payload_bytes=ns.payload_bytes,
        server_cpu=ns.server_cpu,
        client_cpu=ns.client_cpu,
        ws=ns.ws,
        python=ns.python,
        node=ns.node,
        drain_timeout=ns.drain_timeout,
        deadline=ns.deadline,
        deflate=ns.deflate,
        json_out=ns.json_out,
    )


async def main(opts: Options) -> list[RunResult]:
    """Run every (N, server) pair, servers interleaved per N, and print the report."""
    print(versions(opts), flush=True)
    results: list[RunResult] = []
    for n, m in zip(opts.subscribers, opts.messages, strict=True):
        for server in opts.servers:
            print(f"running {server} N={n} M={m} ...", file=sys.stderr, flush=True)
            results.append(await run_one(opts, server, n, m))
    pace = "full speed" if opts.rate <= 0 else f"{opts.rate:g} msg/s"
    deflate = "with" if opts.deflate else "without"
    print(
        f"\none publisher ({pace}, {opts.payload_bytes}-byte padding) -> N subscribers on one channel, "
        f"{deflate} permessage-deflate\n"
    )
    print(table(results))
    print()
    for r in results:
        print(details(r))
    if any((r.loadgen_cpu_percent or 0) > LOADGEN_SATURATED_PERCENT for r in results):
        print(f"\n!gen: load generator above {LOADGEN_SATURATED_PERCENT:g}% of its core; that row may be client-bound")
    if any(r.noise_percent > NOISE_PERCENT for r in results):
        print(
            f"\n!noisy: other programs or hypervisor steal took over {NOISE_PERCENT:g}% of a pinned core;"
            " rerun that row on a quiet machine"
        )
    print(f"\nreproduce: {opts.command()}")
    return results


if __name__ == "__main__":
    options = parse_args()
    check_prerequisites(options)
    # Keep the server's core for the server: this process only samples and waits.
    os.sched_setaffinity(0, {options.client_cpu})
    all_results = asyncio.run(main(options))
    if options.json_out:
        records = [r.__dict__ | {"rss_per_connection_kib": r.rss_per_connection_kib} for r in all_results]
        Path(options.json_out).write_text(json.dumps(records, indent=2))
