"""A real ``uvicorn`` process on a free port of 127.0.0.1, for tests that need the server's
own timing, signals or exit status (a client in the same event loop hides races).

The listening socket is bound here and handed to uvicorn (``--fd``), so clients can connect
as soon as the process is started: their connections wait in the backlog until uvicorn,
after the app's lifespan startup, accepts them. No polling, no sleeps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servers import bound_socket

TESTS = Path(__file__).parent
STOP_WAIT = 20.0
"""Seconds the process has to exit after the test, before it is killed."""


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """Everything the process wrote (stdout and stderr); only once it has exited."""
        assert self.process.poll() is not None
        out, _ = self.process.communicate()
        return out


@contextlib.contextmanager
def uvicorn_process(app: str, *args: str, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``python -m uvicorn <app> --fd N <args>`` with ``tests/`` as its app directory."""
    sock = bound_socket()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--app-dir", str(TESTS), "--fd", str(sock.fileno()), *args],
            pass_fds=[sock.fileno()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
    finally:
        port = sock.getsockname()[1]
        sock.close()  # the child holds its own copy
    try:
        yield ServerProcess(process, port)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
