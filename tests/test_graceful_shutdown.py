"""SIGTERM under a plain ``uvicorn app:app``: every client gets its queued messages, then
3001 ``shutdown`` (tutorial-API connections too, while their endpoint waits in ``receive``);
a publish in flight is answered first; the process then exits as uvicorn
does after a SIGTERM, having run the lifespan shutdown.

uvicorn, left alone, closes every WebSocket with 1012 before the lifespan shutdown runs;
the hub chains its own SIGTERM handler in front of uvicorn's (``signals.py``). Run under
uvicorn's default WebSocket protocol (the ASGI path) and under ``RealtimeWebSocketProtocol``
(the hub's direct channel: the queues drain through its paused-writing path).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess

import httpx
import pytest
from subprocess_server import ServerProcess, uvicorn_process
from websockets.asyncio.client import connect
from wsclient import ProtocolClient, read_until_closed

WAIT = 10.0
"""Upper bound of each wait, in seconds."""

SHUTDOWN_TIMEOUT = 5.0
CLIENTS = 20
MESSAGES = 300
SIZE = 3000
"""300 x 3 KB queued per client: within the 1 MiB queue limit, beyond what the sockets take at once."""


async def line_containing(server: ServerProcess, text: str, seen: list[str]) -> None:
    """Read the server's output until a line contains ``text`` (the lines are kept in ``seen``)."""
    stdout = server.process.stdout
    assert stdout is not None
    while True:
        line = await asyncio.to_thread(stdout.readline)
        assert line, f"the server exited before printing {text!r}:\n{''.join(seen)}"
        seen.append(line)
        if text in line:
            return


@pytest.mark.parametrize(
    "ws", ["auto", "fastapi_realtime.transports.uvicorn_ws:RealtimeWebSocketProtocol"], ids=["uvicorn", "realtime"]
)
async def test_sigterm_gives_every_client_its_queue_then_3001_and_answers_the_publish_in_flight(ws: str) -> None:
    seen: list[str] = []
    env = {"SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)}
    with uvicorn_process("lifecycle_app:app", "--log-level", "info", "--ws", ws, env=env) as server:
        url = f"{server.ws_url}/connection/websocket"
        async with asyncio.timeout(WAIT):
            clients = [await ProtocolClient.open(url, ("news",), max_size=None) for _ in range(CLIENTS)]
            publisher = await ProtocolClient.open(url)
            echoes = [await connect(f"{server.ws_url}/echo") for _ in range(5)]
            for ws in echoes:  # each endpoint is now waiting in conn.receive()
                await ws.send("ping")
                assert await ws.recv() == "ping"
            async with httpx.AsyncClient() as http:
                reply = await http.post(f"{server.http_url}/burst", params={"count": MESSAGES, "size": SIZE})
                assert reply.json() == {"published": MESSAGES}
            await publisher.send({"id": 99, "publish": {"channel": "other", "data": {"slow": True}}})
            await line_containing(server, "publish hook entered", seen)

        server.process.send_signal(signal.SIGTERM)

        for client in [*clients, publisher]:
            client.timeout = WAIT
        messages, code = await publisher.closed()
        assert (messages, code) == ([{"id": 99, "publish": {}}], 3001)
        for client in clients:
            messages, code = await client.closed()
            assert code == 3001
            assert [m["push"]["pub"]["data"]["n"] for m in messages] == list(range(MESSAGES))
        for ws in echoes:  # the tutorial API: a receive in progress ends with the hub's 3001
            async with asyncio.timeout(WAIT):
                _, close = await read_until_closed(ws.recv)
            assert close.code == 3001

        try:
            returncode = await asyncio.to_thread(server.process.wait, SHUTDOWN_TIMEOUT + WAIT)
        except subprocess.TimeoutExpired:
            raise AssertionError("the server did not exit in time") from None
        output = "".join(seen) + server.output()
    # uvicorn re-raises the SIGTERM it caught once it has shut down, as for any app.
    assert returncode == -signal.SIGTERM
    assert "Application shutdown complete." in output
    assert "Traceback" not in output and "ERROR" not in output, output
