"""Servers as users run them: ``uvicorn module:app`` in child processes, on free 127.0.0.1 ports.

:func:`server_process` starts uvicorn (one process, or ``--workers N``), waits until every
worker logged its startup, and stops it on exit (SIGTERM, then SIGKILL past a bound). Its
output is kept line by line, so a test can wait for a line and check what was logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from redis_servers import free_port

ROOT = Path(__file__).resolve().parents[1]
START_WAIT = 20.0
"""Seconds a server has to start (every worker)."""
STOP_WAIT = 10.0


class ServerProcess:
    """A running uvicorn (master and workers) and everything it printed."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            async with self._changed:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    async def wait_for(self, pattern: str, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until ``count`` lines match ``pattern`` (a regular expression)."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.count(pattern) >= count or self._reader.done())
        except TimeoutError:
            raise AssertionError(f"no {count} lines matching {pattern!r} within {timeout}s:\n{self.output}") from None
        if self.count(pattern) < count:
            raise AssertionError(f"exited before {count} lines matched {pattern!r}:\n{self.output}")

    async def exited(self, timeout: float = STOP_WAIT) -> int:
        """Wait for the process to exit; its return code."""
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            await self._reader
        return code

    def kill(self) -> None:
        """``kill -9`` the whole server: master and workers (its own process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL past ``STOP_WAIT``; the return code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                return await self.exited()
            except TimeoutError:
                self.kill()
        return await self.exited()


async def start_server(
    app: str, env: Mapping[str, str], *, workers: int = 1, port: int | None = None, wait: bool = True
) -> ServerProcess:
    """Start ``uvicorn app`` (``tests/`` and the repository root importable); with ``wait``,
    return once every worker completed its startup."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(ROOT / "tests"), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "info", "--no-access-log", "--timeout-graceful-shutdown", "3"]
    cmd += ["--ws-max-size", "65536", "--ws-per-message-deflate", "false"]  # the README's flags for the hub's limits
    if workers > 1:
        cmd += ["--workers", str(workers)]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group: kill() reaches the workers too
    )
    server = ServerProcess(proc, port)
    if wait:
        try:
            await server.wait_for("Application startup complete", workers, START_WAIT)
        except BaseException:
            await server.stop()
            raise
    return server


@contextlib.asynccontextmanager
async def server_process(app: str, env: Mapping[str, str], *, workers: int = 1) -> AsyncIterator[ServerProcess]:
    """:func:`start_server` for the block; stopped (and its reader finished) on exit."""
    server = await start_server(app, env, workers=workers)
    try:
        yield server
    finally:
        await server.stop()
