"""Run the centrifuge-js scenarios of ``tests/js/scenarios.mjs`` from pytest.

The scenarios use the official JavaScript SDK (npm ``centrifuge``, pinned in
``tests/js/package.json``) against a hub the test started. Install the Node side once with
``npm ci --prefix tests/js``; CI does that, so a missing ``node_modules`` fails the tests
instead of skipping them.

A scenario talks to the test over its stdout and stdin, one line at a time:

* coordination lines from the scenario: a keyword with an optional JSON payload
  (``READY {"client": "..."}``), read with :meth:`ScenarioProcess.expect`;
* lines to the scenario: :meth:`ScenarioProcess.send` (e.g. ``GO``);
* the last stdout line is the result, a JSON object, returned by
  :meth:`ScenarioProcess.finish`.

One-shot scenarios::

    result = await run_scenario(url, "connect_token", {"token": token})
    assert result["connected"]["client"]

Interactive ones::

    async with scenario(url, "recovery", {"token": token, "channel": "chat:1"}) as js:
        await js.expect("READY")
        await hub.publish("chat:1", {"n": 1})
        offline = await js.expect("OFFLINE")
        await hub.publish("chat:1", {"n": 2})
        await js.send("GO")
        result = await js.finish()

This module holds no tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent / "js"
SCENARIOS_SCRIPT = JS_DIR / "scenarios.mjs"
REQUIRED_NODE_MODULES = ("centrifuge", "ws")
MIN_NODE_MAJOR = 20

#: How long one read of a coordination line waits, in seconds. The scenario's own waits
#: default to 5 s, so its error line normally arrives before this runs out.
LINE_TIMEOUT = 15.0
#: Added to the scenario's ``overall_timeout`` when waiting for its result.
RESULT_GRACE = 5.0
_STDOUT_LIMIT = 16 * 1024 * 1024
_STDERR_KEEP = 64 * 1024


class ScenarioFailed(AssertionError):
    """The scenario failed, ended early, or did not answer in time.

    ``output`` is the scenario's final JSON object when it printed one (with its ``error``
    and the ``events`` timeline of the SDK), ``stderr`` the tail of its stderr.
    """

    def __init__(
        self,
        message: str,
        *,
        output: Mapping[str, Any] | None = None,
        stderr: str = "",
        returncode: int | None = None,
    ) -> None:
        details = [message]
        if returncode is not None:
            details.append(f"exit code: {returncode}")
        if output is not None and output.get("events"):
            events = output["events"][-40:]
            details.append("last SDK events:\n  " + "\n  ".join(json.dumps(e) for e in events))
        if stderr.strip():
            details.append("stderr:\n" + stderr.strip()[-4000:])
        super().__init__("\n".join(details))
        self.output = output
        self.stderr = stderr
        self.returncode = returncode


@functools.cache
def _node_version(node: str) -> str:
    done = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.strip()


def node_available() -> str:
    """Return the path of ``node``, or fail the calling test if the JS side can't run.

    It fails (not skips) when ``node`` is missing or too old, or when ``tests/js/node_modules``
    lacks the SDK: CI installs them, so their absence is a broken setup, not an optional
    feature.
    """
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            f"`node` is not on PATH: the centrifuge-js tests need Node.js >= {MIN_NODE_MAJOR} "
            "(then run `npm ci --prefix tests/js`)",
            pytrace=False,
        )
    version = _node_version(node)
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_NODE_MAJOR:
        pytest.fail(
            f"`{node} --version` says {version!r}: the centrifuge-js tests need Node.js >= {MIN_NODE_MAJOR}",
            pytrace=False,
        )
    missing = [m for m in REQUIRED_NODE_MODULES if not (JS_DIR / "node_modules" / m / "package.json").is_file()]
    if missing:
        pytest.fail(
            f"{JS_DIR / 'node_modules'} lacks {', '.join(missing)}: "
            "run `npm ci --prefix tests/js` from the repository root (CI does this before pytest)",
            pytrace=False,
        )
    return node


def websocket_url(host: str, port: int) -> str:
    """The WebSocket endpoint of a hub served at ``host:port``."""
    return f"ws://{host}:{port}/connection/websocket"


class ScenarioProcess:
    """A running scenario: read its coordination lines, write lines to it, get its result."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, overall_timeout: float) -> None:
        self._proc = proc
        self.name = name
        self._overall_timeout = overall_timeout
        #: Every stdout line read so far, in order (the result line included).
        self.lines: list[str] = []
        #: The final JSON object, once read.
        self.output: dict[str, Any] | None = None
        self._stderr = bytearray()
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        self._eof = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def stderr(self) -> str:
        return self._stderr.decode(errors="replace")

    async def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        while chunk := await self._proc.stderr.read(65536):
            self._stderr += chunk
            if len(self._stderr) > 2 * _STDERR_KEEP:
                del self._stderr[:-_STDERR_KEEP]

    def _failed(self, message: str) -> ScenarioFailed:
        return ScenarioFailed(
            f"centrifuge-js scenario {self.name!r}: {message}",
            output=self.output,
            stderr=self.stderr,
            returncode=self._proc.returncode,
        )

    async def readline(self, within: float = LINE_TIMEOUT) -> str | None:
        """The next stdout line without its newline, or ``None`` at end of output."""
        if self._eof:
            return None
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                raw = await self._proc.stdout.readline()
        except TimeoutError:
            raise self._failed(f"no output line within {within:.1f} s") from None
        if not raw:
            self._eof = True
            return None
        line = raw.decode(errors="replace").rstrip("\r\n")
        self.lines.append(line)
        if line.startswith("{"):
            try:
                self.output = json.loads(line)
            except ValueError:
                raise self._failed(f"unparsable result line: {line[:500]}") from None
        return line

    async def expect(self, keyword: str, within: float = LINE_TIMEOUT) -> Any:
        """Wait for the coordination line ``keyword`` and return its payload (``None`` if bare).

        Other coordination lines are skipped (they stay in :attr:`lines`). Fails if the
        scenario prints its result or exits first, or after ``within`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            line = await self.readline(max(deadline - loop.time(), 0.001))
            if line is None:
                await self._wait_exit(RESULT_GRACE)
                raise self._failed(f"exited before printing {keyword!r}")
            if line.startswith("{"):
                await self._wait_exit(RESULT_GRACE)
                error = (self.output or {}).get("error")
                raise self._failed(f"finished before printing {keyword!r}: {error or 'no error given'}")
            word, _, rest = line.partition(" ")
            if word == keyword:
                return json.loads(rest) if rest.strip() else None

    async def send(self, line: str, within: float = LINE_TIMEOUT) -> None:
        """Write one line to the scenario's stdin."""
        assert self._proc.stdin is not None
        if "\n" in line:
            raise ValueError("send() takes one line")
        try:
            async with asyncio.timeout(within):
                self._proc.stdin.write(line.encode() + b"\n")
                await self._proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            await self._wait_exit(RESULT_GRACE)
            raise self._failed(f"exited before reading {line!r}") from None
        except TimeoutError:
            raise self._failed(f"stdin not writable within {within} s") from None

    async def finish(self, within: float | None = None) -> dict[str, Any]:
        """Wait for the scenario to end and return its ``result`` object.

        Raises :class:`ScenarioFailed` if it failed, exited non-zero, printed no result, or
        did not end within ``within`` seconds (default: its overall timeout plus a grace).
        """
        if within is None:
            within = self._overall_timeout + RESULT_GRACE
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while await self.readline(max(deadline - loop.time(), 0.001)) is not None:
            pass
        await self._wait_exit(max(deadline - loop.time(), RESULT_GRACE))
        output = self.output
        if output is None or not self.lines or not self.lines[-1].startswith("{"):
            raise self._failed("printed no result line")
        if not output.get("ok"):
            raise self._failed(str(output.get("error") or "failed without an error message"))
        if self._proc.returncode != 0:
            raise self._failed("printed an ok result but exited non-zero")
        result = output.get("result")
        return result if isinstance(result, dict) else {}

    async def _wait_exit(self, within: float) -> None:
        try:
            async with asyncio.timeout(within):
                await self._proc.wait()
        except TimeoutError:
            raise self._failed(f"still running {within:.1f} s after its output ended") from None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RESULT_GRACE):
                await self._stderr_task

    async def aclose(self) -> None:
        """Stop the scenario if it still runs, and release its pipes."""
        proc = self._proc
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await proc.stdin.wait_closed()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RESULT_GRACE):
                await proc.wait()
                # Read stdout to its end so the subprocess transport closes cleanly.
                assert proc.stdout is not None
                while await proc.stdout.read(65536):
                    pass
                await self._stderr_task
        if not self._stderr_task.done():
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr_task


@contextlib.asynccontextmanager
async def scenario(url: str, name: str, params: Mapping[str, Any] | None = None) -> AsyncIterator[ScenarioProcess]:
    """Start ``node tests/js/scenarios.mjs URL NAME PARAMS`` and yield it; stop it on exit.

    ``url`` is the hub's WebSocket endpoint (see :func:`websocket_url`); ``params`` go to
    the scenario as JSON (tokens, channel, counts, ``timeout`` in ms for each of its waits,
    ``overall_timeout`` in ms for the whole run, ``debug`` for the SDK's debug log on
    stderr).
    """
    node = node_available()
    params = dict(params or {})
    proc = await asyncio.create_subprocess_exec(
        node,
        str(SCENARIOS_SCRIPT),
        url,
        name,
        json.dumps(params),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(JS_DIR),
        limit=_STDOUT_LIMIT,
    )
    running = ScenarioProcess(proc, name, float(params.get("overall_timeout", 30000)) / 1000)
    try:
        yield running
    finally:
        await running.aclose()


async def run_scenario(
    url: str,
    name: str,
    params: Mapping[str, Any] | None = None,
    *,
    stdin_lines: Iterable[str] = (),
    within: float | None = None,
) -> dict[str, Any]:
    """Run a scenario that needs no coordination and return its ``result`` object."""
    async with scenario(url, name, params) as running:
        for line in stdin_lines:
            await running.send(line)
        return await running.finish(within)
