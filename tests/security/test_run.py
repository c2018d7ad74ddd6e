"""``fastapi_realtime.run`` for real: a process serving on an inherited socket, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap

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


async def test_run_serves_safely_and_stops_on_sigterm() -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, str(sock.fileno()), pass_fds=[sock.fileno()], stderr=asyncio.subprocess.PIPE
    )
    sock.close()  # the child holds it now
    try:
        client = await ProtocolClient.open(f"ws://127.0.0.1:{port}/connection/websocket?token=secret-value")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n")  # never finished
        async with asyncio.timeout(10):
            assert (await reader.read()).startswith(b"HTTP/1.1 408 ")
        writer.close()
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            _, stderr = await process.communicate()
        await client.close()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    log = stderr.decode()
    # uvicorn shuts down (lifespan included), then re-raises the signal it caught
    assert process.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log
    assert "token=[redacted]" in log and "secret-value" not in log
    assert "looser than the hub's" not in log
    assert "Traceback" not in log, log
