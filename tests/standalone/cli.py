"""Run the ``fastapi-realtime`` command as a subprocess, and wait on what it logs."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

WAIT = 20.0
"""Upper bound of each wait on a subprocess (a worker starts in ~2 s on a quiet machine)."""

STARTED = "Application startup complete."


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without any FASTAPI_REALTIME_ variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("FASTAPI_REALTIME_")}
    env.update(extra or {})
    return env


def run_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m fastapi_realtime ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "fastapi_realtime", *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=clean_env(env),
        check=False,
    )


@dataclass
class Served:
    """A running ``serve``; its stderr lines arrive in :attr:`lines` (and :attr:`log`)."""

    process: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)
    """The lines read so far by :meth:`wait_for` (and, after the block, every line)."""

    def wait_for(self, text: str, count: int = 1) -> str:
        """Block until ``count`` lines containing ``text`` were logged; the last one."""
        while sum(text in line for line in self.log) < count:
            line = self.lines.get(timeout=WAIT)
            if line is None:
                raise AssertionError(f"serve exited before logging {text!r}:\n" + "\n".join(self.log))
            self.log.append(line.rstrip("\n"))
        return next(line for line in reversed(self.log) if text in line)

    def rest(self) -> list[str]:
        """Every line logged, once the process has exited."""
        while (line := self.lines.get(timeout=WAIT)) is not None:
            self.log.append(line.rstrip("\n"))
        return self.log

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=WAIT)


def serving(
    *args: str, env: Mapping[str, str] | None = None, workers: int = 1
) -> contextlib.AbstractContextManager[Served]:
    """``python -m fastapi_realtime serve ARGS`` until the block ends (then SIGTERM, KILL if stuck)."""
    return running([sys.executable, "-m", "fastapi_realtime", "serve", *args], env=env, workers=workers)


@contextlib.contextmanager
def running(argv: list[str], *, env: Mapping[str, str] | None = None, workers: int = 1) -> Iterator[Served]:
    """The server command ``argv`` until the block ends (then SIGTERM, KILL if stuck)."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(env),
    )
    served = Served(process)

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            served.lines.put(line)
        served.lines.put(None)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        served.wait_for(STARTED, count=workers)
        yield served
    finally:
        try:
            served.stop()
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(WAIT)
        assert process.stderr is not None
        process.stderr.close()
