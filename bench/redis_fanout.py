"""Scale-out benchmark: the hub on the Redis broker, against one process on the memory broker.

Two measurements, each bounded in time, everything started and stopped by the script:

1. **Publications/s through Redis.** One hub process (pinned to ``--server-cpu``) publishes
   ``--publish-count`` messages to one channel through the Redis broker, without history (a
   ``PUBLISH``) and with history (the Lua script that assigns the offset, saves, trims and
   fans out), one at a time (each waits for its round trip) and with ``--in-flight`` publishes
   at once. ``redis-server`` runs on ``--client-cpu``.
2. **Deliveries/s and p99 with N subscribers** (default 1,000): the load generator of
   ``fanout.py`` (``loadgen.mjs``, on ``--client-cpu``) publishes through a WebSocket to one
   server and its subscribers are spread round-robin over the servers:
   ``memory``: one server process on the memory broker (as in ``fanout.py``);
   ``redis x1``: one server process on the Redis broker (what Redis costs by itself);
   ``redis x2``: two server processes sharing one ``redis-server``, subscribers split over
   both, publications entering through the first.
   Both server processes share ``--server-cpu`` (``taskset -c``); ``redis-server`` shares the
   load generator's core, so each row prints the CPU of every process and of both cores.

Run from the repository root with the project installed, the load generator's npm package
installed (``npm ci --prefix bench``) and ``redis-server`` on the PATH::

    python bench/redis_fanout.py        # about a minute; make bench-redis does the same
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
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from fanout import BENCH_DIR, LOADGEN, Options, fmt, free_port, read_event, stop_process, uvicorn_server
from procstat import CpuSampler

from fastapi_realtime import ChannelOptions, Hub, HubSettings

SCRIPT = Path(__file__).resolve()


@dataclass(frozen=True)
class Settings:
    """The knobs of one run; printed back as the command that reproduces it."""

    subscribers: int
    messages: int
    publish_count: int
    in_flight: int
    server_cpu: int
    client_cpu: int
    python: str
    node: str
    deadline: float
    profile: str | None = None
    """Directory for py-spy profiles of the server processes in part 2 (None: no profiling)."""

    def command(self) -> str:
        argv = [
            self.python, str(SCRIPT),
            "--subscribers", str(self.subscribers), "--messages", str(self.messages),
            "--publish-count", str(self.publish_count), "--in-flight", str(self.in_flight),
            "--server-cpu", str(self.server_cpu), "--client-cpu", str(self.client_cpu),
            "--node", self.node, "--deadline", f"{self.deadline:g}",
        ]  # fmt: skip
        if self.profile:
            argv += ["--profile", self.profile]
        return shlex.join(argv)


# -- redis-server ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def redis_server(cpu: int) -> AsyncIterator[tuple[str, int]]:
    """A throw-away ``redis-server`` (no persistence) on a free port, pinned to ``cpu``;
    yields its URL and pid."""
    port = free_port()
    argv = ["taskset", "-c", str(cpu), "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = aioredis.Redis.from_url(url)
        try:
            async with asyncio.timeout(10):
                while True:
                    with contextlib.suppress(aioredis.ConnectionError):
                        await client.ping()
                        break
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        yield url, proc.pid
    finally:
        await stop_process(proc, grace=5)


# -- 1. publications/s ------------------------------------------------------------------------


async def publish_worker(url: str, history: int, count: int, in_flight: int) -> dict[str, Any]:
    """In the pinned child process: publish ``count`` messages and time it."""
    from fastapi_realtime.brokers.redis import RedisBroker

    settings = HubSettings(namespaces={"": ChannelOptions(history_size=history)})
    async with Hub(settings, broker=RedisBroker(url)) as hub:
        payload = b'{"p":"' + b"x" * 64 + b'"}'
        for i in range(50):  # warm up the connection pool and the script cache
            await hub.publish(f"warmup{i}", payload)
        latencies: list[float] = []
        pending = asyncio.Semaphore(in_flight)

        async def one() -> None:
            async with pending:
                started = time.perf_counter()
                await hub.publish("bench", payload)
                latencies.append(time.perf_counter() - started)

        started = time.time()
        await asyncio.gather(*(one() for _ in range(count)))
        ended = time.time()
    latencies.sort()
    return {
        "publications_per_second": count / (ended - started),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "window_start": started,
        "window_end": ended,
    }


@dataclass(frozen=True)
class PublishRow:
    history: int
    in_flight: int
    result: dict[str, Any]
    hub_cpu: float | None
    redis_cpu: float | None


async def measure_publish(s: Settings, url: str, redis_pid: int, history: int, in_flight: int) -> PublishRow:
    argv = ["taskset", "-c", str(s.server_cpu), s.python, str(SCRIPT), "--publish-worker"]
    argv += ["--redis-url", url, "--history", str(history), "--publish-count", str(s.publish_count)]
    argv += ["--in-flight", str(in_flight)]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=BENCH_DIR)
    sampler = CpuSampler({"hub": proc.pid, "redis": redis_pid})
    sampler.sample()
    sampling = asyncio.create_task(sampler.run())
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), s.deadline)
        if line:
            sampler.sample()  # the worker waits for its stdin to close before it exits
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling
        await stop_process(proc, grace=5)
    if not line:
        raise RuntimeError(f"publish worker exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(line)
    start, end = result["window_start"], result["window_end"]
    return PublishRow(
        history,
        in_flight,
        result,
        sampler.percent_of_core("hub", start, end),
        sampler.percent_of_core("redis", start, end),
    )


# -- profiling --------------------------------------------------------------------------------


async def start_profiler(pid: int, out: Path) -> asyncio.subprocess.Process:
    """``py-spy record`` of ``pid`` into ``out`` (collapsed stacks) until SIGINT."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--nonblocking"]
    return await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 12) -> str:
    """The frames that held the most samples, by own time and including callees."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [f"{path.name}: {total} samples", "  own time:"]
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"    {100 * count / max(total, 1):5.1f}%  {frame}")
    lines.append("  including callees:")
    for frame, count in sorted(inclusive.items(), key=lambda kv: -kv[1])[: top * 2]:
        lines.append(f"    {100 * count / max(total, 1):5.1f}%  {frame}")
    return "\n".join(lines)


# -- 2. deliveries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryRow:
    setup: str
    result: dict[str, Any]
    cpu: dict[str, float | None]


async def measure_deliveries(s: Settings, setup: str, redis: tuple[str, int] | None, servers: int = 1) -> DeliveryRow:
    """``setup`` names the row: ``servers`` processes on the memory broker (``redis`` None) or
    sharing ``redis`` (URL and pid)."""
    opts = fanout_options(s)
    env = {} if redis is None else {"REDIS_URL": redis[0]}
    ports = [free_port() for _ in range(servers)]
    async with contextlib.AsyncExitStack() as stack:
        procs = [await stack.enter_async_context(uvicorn_server(opts, "realtime", p, env)) for p in ports]
        argv = [
            "taskset", "-c", str(s.client_cpu), s.node, str(LOADGEN),
            "--sub-url", ",".join(f"ws://127.0.0.1:{p}/connection/websocket" for p in ports),
            "--pub-url", f"ws://127.0.0.1:{ports[0]}/publish",
            "--protocol", "centrifuge", "--subscribers", str(s.subscribers), "--messages", str(s.messages),
            "--deadline", f"{s.deadline:g}",
        ]  # fmt: skip
        gen = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=BENCH_DIR)
        pids = {f"server{i + 1}": p.pid for i, p in enumerate(procs)} | {"loadgen": gen.pid}
        if redis is not None:
            pids["redis"] = redis[1]
        sampler = CpuSampler(pids, cores={"core0": s.server_cpu, "core1": s.client_cpu})
        sampling: asyncio.Task[None] | None = None
        profilers: list[asyncio.subprocess.Process] = []
        try:
            await read_event(gen, "ready", timeout=s.deadline)
            if s.profile:
                for i, proc in enumerate(procs):
                    out = Path(s.profile) / f"{setup.replace(' ', '')}-server{i + 1}.txt"
                    profilers.append(await start_profiler(proc.pid, out))
            sampler.sample()
            sampling = asyncio.create_task(sampler.run())
            assert gen.stdin is not None
            gen.stdin.write(b"go\n")
            await gen.stdin.drain()
            result = await read_event(gen, "result", timeout=s.deadline + 30)
            sampler.sample()
        finally:
            for profiler in profilers:
                await stop_process(profiler, grace=10)
            if sampling is not None:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
            await stop_process(gen, grace=15)
    start, end = result["window_start_ms"] / 1000, result["window_end_ms"] / 1000
    cpu = {name: sampler.percent_of_core(name, start, end) for name in [*pids, "core0", "core1"]}
    return DeliveryRow(setup, result, cpu)


def fanout_options(s: Settings) -> Options:
    """What ``fanout.uvicorn_server`` needs to start a pinned ``realtime_app`` server."""
    return Options(
        servers=("realtime",),
        subscribers=(s.subscribers,),
        messages=(s.messages,),
        rate=0.0,
        payload_bytes=64,
        server_cpu=s.server_cpu,
        client_cpu=s.client_cpu,
        ws="auto",
        python=s.python,
        node=s.node,
        drain_timeout=15.0,
        deadline=s.deadline,
        deflate=False,
        json_out=None,
    )


# -- report -----------------------------------------------------------------------------------


def report(s: Settings, publish: Sequence[PublishRow], deliveries: Sequence[DeliveryRow]) -> str:
    lines = [
        f"1. publications/s through Redis: one hub process on CPU {s.server_cpu}, redis-server on CPU "
        f"{s.client_cpu}, {s.publish_count} publications of 74 bytes to one channel",
        "",
        f"{'history':>8} {'in flight':>9} {'publications/s':>14} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'hub CPU%':>8} {'redis CPU%':>10}",
    ]
    for row in publish:
        r = row.result
        lines.append(
            f"{row.history:>8} {row.in_flight:>9} {r['publications_per_second']:>14,.0f} {r['p50_ms']:>7.2f} "
            f"{r['p99_ms']:>7.2f} {fmt(row.hub_cpu, '8.0f')} {fmt(row.redis_cpu, '10.0f')}"
        )
    lines += [
        "",
        f"2. one publisher -> {s.subscribers} subscribers on one channel, {s.messages} messages at full speed; "
        f"servers on CPU {s.server_cpu}, load generator (and redis-server) on CPU {s.client_cpu}",
        "",
        f"{'setup':<9} {'deliveries/s':>12} {'msgs/frame':>10} {'p50 ms':>7} {'p99 ms':>7} {'lost':>5} {'server1%':>8} "
        f"{'server2%':>8} {'redis%':>6} {'gen%':>5} {'CPU0%':>6} {'CPU1%':>6} {'others0%':>8} {'others1%':>8}",
    ]
    for d in deliveries:
        r, c = d.result, d.cpu
        lines.append(
            f"{d.setup:<9} {r['deliveries_per_second']:>12,.0f} {r['delivered'] / max(r['frames'], 1):>10.1f} "
            f"{fmt(r['latency_ms']['p50'], '7.1f')} "
            f"{fmt(r['latency_ms']['p99'], '7.1f')} {r['lost']:>5} {fmt(c.get('server1'), '8.0f')} "
            f"{fmt(c.get('server2'), '8.0f')} {fmt(c.get('redis'), '6.0f')} {fmt(c.get('loadgen'), '5.0f')} "
            f"{fmt(c.get('core0'), '6.0f')} {fmt(c.get('core1'), '6.0f')} "
            f"{fmt(others(c, 'core0', 'server1', 'server2'), '8.0f')} "
            f"{fmt(others(c, 'core1', 'loadgen', 'redis'), '8.0f')}"
        )
    lines += [
        "",
        "CPU%: of one core over the measured window; CPU0%/CPU1%: the whole core, whoever ran there;",
        "others0%/others1%: what other programs (and hypervisor steal) took of each pinned core.",
        "msgs/frame: publications per WebSocket frame the subscribers received (the hub batches what is queued).",
    ]
    if s.profile:
        for path in sorted(Path(s.profile).glob("*.txt")):
            lines += ["", summarize_profile(path)]
    lines += ["", f"reproduce: {s.command()}"]
    return "\n".join(lines)


def others(cpu: dict[str, float | None], core: str, *names: str) -> float | None:
    """CPU of ``core`` not used by the processes ``names`` (missing ones count as 0)."""
    total = cpu.get(core)
    if total is None:
        return None
    return max(0.0, total - sum(cpu.get(name) or 0.0 for name in names))


async def main(s: Settings) -> None:
    publish: list[PublishRow] = []
    deliveries: list[DeliveryRow] = []
    async with redis_server(s.client_cpu) as (url, redis_pid):
        for history in (0, 100):
            for in_flight in (1, s.in_flight):
                print(f"publishing: history={history} in_flight={in_flight} ...", file=sys.stderr, flush=True)
                publish.append(await measure_publish(s, url, redis_pid, history, in_flight))
        print("deliveries: memory ...", file=sys.stderr, flush=True)
        deliveries.append(await measure_deliveries(s, "memory", None))
        for servers in (1, 2):
            print(f"deliveries: redis x{servers} ...", file=sys.stderr, flush=True)
            deliveries.append(await measure_deliveries(s, f"redis x{servers}", (url, redis_pid), servers))
    print(report(s, publish, deliveries))


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=500, help="messages the publisher sends in part 2")
    parser.add_argument("--publish-count", type=int, default=20_000, help="publications per row of part 1")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=64,
        help="concurrent publishes in part 1's second rows (above the broker's pool of 50 connections: "
        "the rest wait for a free one)",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--node", default="node")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds any one run may take")
    parser.add_argument("--profile", default=None, help="directory for py-spy profiles of part 2's servers")
    parser.add_argument("--publish-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--history", type=int, default=0, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    settings = Settings(
        subscribers=ns.subscribers,
        messages=ns.messages,
        publish_count=ns.publish_count,
        in_flight=ns.in_flight,
        server_cpu=ns.server_cpu,
        client_cpu=ns.client_cpu,
        python=ns.python,
        node=ns.node,
        deadline=ns.deadline,
        profile=ns.profile,
    )
    return ns, settings


if __name__ == "__main__":
    args, run = parse_args()
    if args.publish_worker:
        print(json.dumps(asyncio.run(publish_worker(args.redis_url, args.history, run.publish_count, run.in_flight))))
        sys.stdout.flush()
        sys.stdin.readline()  # exit when the parent has taken its last CPU sample
        sys.exit(0)
    for tool in ("taskset", "redis-server", run.node):
        if shutil.which(tool) is None:
            sys.exit(f"redis_fanout: {tool} not found")
    if not (BENCH_DIR / "node_modules" / "ws").is_dir():
        sys.exit(f"redis_fanout: run `npm ci --prefix {BENCH_DIR}` first")
    if run.profile:
        Path(run.profile).mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, {run.client_cpu})
    asyncio.run(main(run))
