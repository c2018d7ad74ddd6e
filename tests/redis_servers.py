"""Real ``redis-server`` processes on free 127.0.0.1 ports for tests: one server or a 3-primary cluster.

Use the session-scoped fixtures ``redis_server`` and ``redis_cluster`` (registered in conftest.py),
or, for a test that needs its own server (to stop, restart or kill it), :func:`start_redis` /
:class:`RedisServer` directly::

    server = start_redis(tmp_path, persistence=True)
    try:
        ...
        server.restart()          # SIGTERM, then start again on the same port and data dir
        server.kill()             # SIGKILL: a crash
    finally:
        server.stop()

Every start waits until the server answers PING (polling with a deadline, never a fixed sleep); a
cluster start waits until every node reports ``cluster_state:ok``. The calls block: from a
coroutine that must keep running meanwhile, use ``await asyncio.to_thread(server.restart)``.

Locally, a test that asks for Redis is skipped with a clear message when ``redis-server`` is not
installed; with ``CI=true`` it fails instead, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
import redis


class _Stoppable(Protocol):
    def stop(self) -> None: ...


R = TypeVar("R", bound=_Stoppable)

START_TIMEOUT = 15.0
"""Seconds a server (or a cluster) gets to become ready."""
POLL_INTERVAL = 0.02


def require_redis() -> str:
    """The path of ``redis-server``; skips the test (fails under ``CI=true``) when it is missing."""
    path = shutil.which("redis-server")
    if path is None or shutil.which("redis-cli") is None:
        message = "redis-server/redis-cli not found: install Debian's redis-server package to run the Redis tests"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: Redis tests must run)")
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until(check: Callable[[], bool], what: str, timeout: float, alive: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        failure = alive()
        if failure is not None:
            raise RuntimeError(f"{what}: {failure}")
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready within {timeout}s")
        time.sleep(POLL_INTERVAL)  # polling a process we do not control, with a deadline


@dataclass
class RedisServer:
    """One ``redis-server`` process. ``url`` is ``redis://127.0.0.1:<port>``."""

    directory: Path
    port: int = field(default_factory=free_port)
    persistence: bool = False
    password: str | None = None
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def command(self) -> list[str]:
        args = [
            require_redis(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.persistence:
            args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        return args + self.extra_args

    def client(self) -> redis.Redis:
        """A synchronous client for set-up and inspection."""
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> None:
        """Start the process and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until(self.ping, f"redis-server on port {self.port}", START_TIMEOUT, self._exited)

    def ping(self) -> bool:
        try:
            with self.client() as c:
                return bool(c.ping())
        except (redis.ConnectionError, redis.ResponseError):  # not listening yet, or still loading its data
            return False

    def _exited(self) -> str | None:
        if self.process is None or self.process.poll() is None:
            return None
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        return f"exited with {self.process.returncode}\n{tail}"

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown). Idempotent."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait: a crash, nothing saved."""
        self._signal(signal.SIGKILL)

    def restart(self) -> None:
        """Stop, then start again on the same port and data directory."""
        self.stop()
        self.start()

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


def start_redis(directory: Path, **options: object) -> RedisServer:
    """Start one server in ``directory`` (see :class:`RedisServer` for the options)."""
    server = RedisServer(directory=directory, **options)  # type: ignore[arg-type]
    try:
        server.start()
    except BaseException:
        server.kill()
        raise
    return server


@dataclass
class RedisCluster:
    """A Redis Cluster of primaries without replicas. ``url`` names one node; clients discover the rest."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def flushall(self) -> None:
        for node in self.nodes:
            with node.client() as c:
                c.flushall()

    def wait_ok(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every running node reports ``cluster_state:ok``."""
        for node in self.nodes:
            if node.process is not None:
                _wait_until(lambda n=node: _cluster_ok(n), f"cluster node {node.port}", timeout, node._exited)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_ok(node: RedisServer) -> bool:
    try:
        with node.client() as c:
            info = c.execute_command("CLUSTER", "INFO")
    except redis.RedisError:
        return False
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


def start_cluster(directory: Path, primaries: int = 3) -> RedisCluster:
    """Start ``primaries`` nodes with ``--cluster-enabled yes``, join them with ``redis-cli --cluster
    create`` (no replicas) and wait until the cluster is ok."""
    nodes: list[RedisServer] = []
    try:
        for i in range(primaries):
            node = RedisServer(
                directory=directory / f"node{i}",
                extra_args=[
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000",
                    "--cluster-port", str(free_port()),
                ],
            )  # fmt: skip
            nodes.append(node)
            node.start()
        cli = shutil.which("redis-cli") or "redis-cli"
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT,
        )
        cluster = RedisCluster(nodes)
        cluster.wait_ok()
    except BaseException:
        for node in nodes:
            node.kill()
        raise
    return cluster


def _running(start: Callable[[Path], R]) -> Iterator[R]:
    """Start a server (or cluster) in a temporary directory; stop it and remove the directory after."""
    require_redis()
    with tempfile.TemporaryDirectory(prefix="redis-") as tmp:
        running = start(Path(tmp))
        try:
            yield running
        finally:
            running.stop()


def redis_server_fixture() -> Iterator[RedisServer]:
    """Body of the session fixture ``redis_server``: one server for the whole run."""
    yield from _running(start_redis)


def redis_cluster_fixture() -> Iterator[RedisCluster]:
    """Body of the session fixture ``redis_cluster``: one 3-primary cluster for the whole run."""
    yield from _running(start_cluster)
