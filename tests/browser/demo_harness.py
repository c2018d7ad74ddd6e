"""The demo server in a subprocess, and where the browser tests keep their artefacts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DEMO_CONFIG = ROOT / "examples" / "demo.toml"
READY_LINE = "Application startup complete"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
WAIT_MS = 10_000
"""How long a page may take to show what a test waits for (milliseconds)."""


def require_browser(chromium: Path = CHROMIUM, environ: Mapping[str, str] = os.environ) -> None:
    """Skip the calling test when Playwright or Chromium is missing; fail it under ``CI=true``."""
    missing = None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None and not chromium.exists():
        missing = f"{chromium} not found (apt-get install -y chromium; or set CHROMIUM=/path/to/it)"
    if missing is None:
        return
    if environ.get("CI") == "true":
        pytest.fail(f"browser tests must run under CI: {missing}")
    pytest.skip(f"browser tests skipped: {missing}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DemoServer:
    """``python -m fastapi_realtime serve -c examples/demo.toml --demo`` on a fixed port, started
    and stopped (SIGTERM, the graceful way) as often as a test likes."""

    def __init__(self, port: int, *options: str) -> None:
        self.port = port
        self.options = options
        self.url = f"http://127.0.0.1:{port}"
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        command = [sys.executable, "-m", "fastapi_realtime", "serve", "-c", str(DEMO_CONFIG), "--demo"]
        command += ["--port", str(self.port), "--set", "metrics=false", *self.options]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTAPI_REALTIME_")}
        self.process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        ready = asyncio.get_running_loop().create_future()
        self._drain = asyncio.create_task(self._read(self.process, ready))
        try:
            await asyncio.wait_for(ready, START_TIMEOUT)
        except TimeoutError:
            raise AssertionError("the demo server did not start:\n" + "\n".join(self.log)) from None

    async def _read(self, process: asyncio.subprocess.Process, ready: asyncio.Future[None]) -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if READY_LINE in line and not ready.done():
                ready.set_result(None)
        if not ready.done():
            ready.set_exception(AssertionError("the demo server exited:\n" + "\n".join(self.log)))

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise AssertionError("the demo server did not stop on SIGTERM") from None
        if self._drain is not None:
            await self._drain

    def errors(self) -> list[str]:
        """Log lines at ERROR or worse, and tracebacks."""
        return [line for line in self.log if " ERROR " in line or " CRITICAL " in line or "Traceback" in line]


@contextlib.asynccontextmanager
async def running_demo(*options: str) -> AsyncIterator[DemoServer]:
    """A started :class:`DemoServer` (extra ``serve`` flags: ``options``), stopped on exit; it
    must not have logged an error."""
    server = DemoServer(free_port(), *options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert not server.errors(), "the demo server logged errors:\n" + "\n".join(server.log)
