"""``fastapi_realtime.run`` for real: a process serving on an inherited socket, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from servers import bound_socket
from wsclient import ProtocolClient

SERVER = textwrap.dedent(
    """
    import sys
    from fastapi import FastAPI
    import fastapi_realtime
    from fastapi_realtime import Hub, HubSettings

    hub = Hub(HubSettings(allow_anonymous=True, handshake_timeout=2.0))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    fastapi_realtime.run(app, hub=hub, fd=int(sys.argv[1]), log_level="info", ws_ping_interval=None)
    """
)


@dataclass
class ServerProcess:
    """A server process on an inherited listening socket; its output once it is stopped."""

    process: asyncio.subprocess.Process
    port: int
    log: str = ""

    async def stop(self) -> None:
        """SIGTERM, then wait for the exit; ``log`` gets stdout and stderr (uvicorn's access log is
        on stdout)."""
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            stdout, stderr = await self.process.communicate()
        self.log = stdout.decode() + stderr.decode()


@contextlib.asynccontextmanager
async def server_process(*args: str) -> AsyncIterator[ServerProcess]:
    """Run ``python args... FD`` where FD is a listening socket on a free 127.0.0.1 port."""
    sock = bound_socket()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        str(sock.fileno()),
        pass_fds=[sock.fileno()],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    port = sock.getsockname()[1]
    sock.close()  # the child holds it now
    try:
        yield ServerProcess(process, port)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_run_serves_safely_and_stops_on_sigterm() -> None:
    async with server_process("-c", SERVER) as server:
        client = await ProtocolClient.open(f"ws://127.0.0.1:{server.port}/connection/websocket?token=secret-value")
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\n")  # never finished
        async with asyncio.timeout(10):
            assert (await reader.read()).startswith(b"HTTP/1.1 408 ")
        writer.close()
        await server.stop()
        await client.close()
    log = server.log
    # uvicorn shuts down (lifespan included), then re-raises the signal it caught
    assert server.process.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log
    assert "token=[redacted]" in log and "secret-value" not in log
    assert "looser than the hub's" not in log
    assert "Traceback" not in log, log


PLAIN_APP = textwrap.dedent(
    """
    import fastapi_realtime
    from fastapi import FastAPI
    from fastapi_realtime import Hub, HubSettings

    fastapi_realtime.install_log_redaction()  # the one line the README gives library users
    hub = Hub(HubSettings(allow_anonymous=True))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"ok": "yes"}
    """
)


async def test_plain_uvicorn_with_the_one_line_redacts_and_warns_once(tmp_path: Path) -> None:
    (tmp_path / "plain_app.py").write_text(PLAIN_APP)
    async with server_process("-m", "uvicorn", "plain_app:app", "--app-dir", str(tmp_path), "--fd") as server:
        for _ in range(2):
            client = await ProtocolClient.open(f"ws://127.0.0.1:{server.port}/connection/websocket?token=ws-secret")
            await client.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /?token=http-secret HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(10):
            assert (await reader.read()).startswith(b"HTTP/1.1 200 ")
        writer.close()
        await server.stop()
    log = server.log
    assert '"GET /?token=[redacted] HTTP/1.1" 200' in log, log
    assert "ws-secret" not in log and "http-secret" not in log, log
    assert log.count("looser than the hub's") == 1, log
    assert "Traceback" not in log, log
