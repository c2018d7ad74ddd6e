"""HTTP server API benchmark: publishes per second through ``POST /api/publish`` and ``/api/batch``.

It starts ``examples/http_api.py`` under uvicorn on 127.0.0.1 (pinned to core 0 with
``taskset`` when there are two cores or more), pins itself to core 1, and sends ``--requests``
publishes into ``news:bench`` (a channel that keeps history) in three ways:

* ``publish xC``: one publish per request, C requests in flight over C keep-alive connections;
* ``batch of B``: B publishes per ``batch`` request, one request in flight.

For each it prints publications/s, request latency p50/p99 and the CPU both processes used
over the run (``utime + stime``, % of one core), so a client-bound row shows (client near
100%). The client is aiohttp (installed with the ``dev`` extra, by ``cent``), cheaper per
request than httpx. Every run is bounded by ``--deadline`` seconds.

    .venv/bin/python bench/http_api.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
STARTED = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def cpu_seconds(pid: int) -> float:
    """``utime + stime`` of process ``pid``, in seconds (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def start_server() -> tuple[asyncio.subprocess.Process, int]:
    command = [sys.executable, "-m", "uvicorn", "examples.http_api:app", "--host", "127.0.0.1", "--port", "0"]
    command += ["--log-level", "info", "--no-access-log"]
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    env = {**os.environ, "API_KEY": KEY}
    proc = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    async with asyncio.timeout(30):
        while True:
            line = await proc.stderr.readline()
            if not line:
                raise RuntimeError("the server exited before it served")
            if found := STARTED.search(line):
                return proc, int(found.group(1))


async def run(url: str, server_pid: int, label: str, bodies: list[tuple[str, bytes]], concurrency: int) -> None:
    """Send ``bodies`` (path, JSON) with ``concurrency`` requests in flight; print one row."""
    latencies: list[float] = []
    pending = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def worker() -> None:
            for path, body in pending:
                started = time.perf_counter()
                async with session.post(path, data=body) as response:
                    reply = await response.read()
                    if response.status != 200 or b'"error"' in reply:
                        raise RuntimeError(f"{response.status} {reply[:200]!r}")
                latencies.append(time.perf_counter() - started)

        server_cpu, client_cpu, started = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    publications = sum(body.count(b'"publish"') or 1 for _, body in bodies)
    server_pct = 100 * (cpu_seconds(server_pid) - server_cpu) / elapsed
    client_pct = 100 * (time.process_time() - client_cpu) / elapsed
    p50, p99 = statistics.quantiles(latencies, n=100)[49], statistics.quantiles(latencies, n=100)[98]
    print(
        f"{label:<14} {publications / elapsed:>10,.0f} {p50 * 1000:>8.2f} {p99 * 1000:>8.2f}"
        f" {server_pct:>8.0f} {client_pct:>8.0f}"
    )


async def main(args: argparse.Namespace) -> None:
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    proc, port = await start_server()
    url = f"http://127.0.0.1:{port}"
    one = [("/api/publish", b'{"channel": "news:bench", "data": {"n": %d}}' % n) for n in range(args.requests)]
    batch_size = args.batch
    commands = b",".join(b'{"publish": {"channel": "news:bench", "data": {"n": 1}}}' for _ in range(batch_size))
    batches = [("/api/batch", b'{"commands": [%s]}' % commands)] * max(1, args.requests // batch_size)
    try:
        async with asyncio.timeout(args.deadline):
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"load average before the run: {load} (other work on these cores skews the rows)")
            print(f"{'mode':<14} {'pubs/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'srv CPU%':>8} {'cli CPU%':>8}")
            for concurrency in args.concurrency:
                await run(url, proc.pid, f"publish x{concurrency}", one, concurrency)
            await run(url, proc.pid, f"batch of {batch_size}", batches, 1)
    finally:
        proc.terminate()
        await proc.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="publishes per row (default 5000)")
    parser.add_argument(
        "--concurrency", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16], help="default 1,16"
    )
    parser.add_argument("--batch", type=int, default=100, help="publishes per batch request (default 100)")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds the whole run may take")
    asyncio.run(main(parser.parse_args()))
