"""The connection log lines (``fastapi_realtime.connections``, see :mod:`fastapi_realtime.connlog`):
one per connect, close and refusal, with its level, message and extras, and never a token."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import orjson
import pytest
from fastapi import FastAPI, WebSocket
from servers import RunningServer, running_server
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from wsclient import ProtocolClient

from fastapi_realtime import Hub, HubSettings, JWTAuth
from fastapi_realtime.server.logs import JSONFormatter, SessionContextFilter

SECRET = "a-secret-of-at-least-32-bytes-long!!"
WAIT = 5.0
LOGGER = "fastapi_realtime.connections"


def token(sub: str, key: str = SECRET) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, key, algorithm="HS256")


@contextlib.asynccontextmanager
async def serving(caplog: pytest.LogCaptureFixture, **settings: Any) -> AsyncIterator[tuple[RunningServer, Hub]]:
    caplog.set_level(logging.DEBUG, logger="fastapi_realtime")
    hub = Hub(HubSettings(**settings), auth=JWTAuth(secret=SECRET))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())

    @app.websocket("/room")
    async def room(websocket: WebSocket) -> None:
        async with hub.connection(websocket, user="bob") as conn:
            text = await conn.receive_text()
            if text == "bye":
                conn.close(4001, "done here")
                await conn.receive_text()

    async with running_server(app) as server:
        yield server, hub


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


async def idle(hub: Hub) -> None:
    """Wait until every session ended: its close line is logged by then."""
    async with asyncio.timeout(WAIT):
        await hub.wait_idle()


def extras(record: logging.LogRecord, *keys: str) -> dict[str, Any]:
    return {key: getattr(record, key) for key in keys}


def assert_closed(record: logging.LogRecord, by: str, code: int, reason: str, *, user: str, client: str) -> None:
    """``record`` is the DEBUG line of a connection ``by`` closed with ``code`` and ``reason``."""
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == f"closed by {by}: code {code} ({reason}), user {user!r}, client {client}"
    assert extras(record, "user", "client", "code", "reason", "closed_by") == {
        "user": user,
        "client": client,
        "code": code,
        "reason": reason,
        "closed_by": by,
    }


async def test_connect_and_close_by_the_client(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as (server, hub):
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", token=token("alice"))
        client_id = next(iter(hub.sessions_of("alice"))).id
        await client.close()
        await idle(hub)
    connected, closed = lines(caplog)
    assert connected.levelno == logging.DEBUG
    assert connected.getMessage() == f"connected: user 'alice', client {client_id}"
    assert extras(connected, "user", "client") == {"user": "alice", "client": client_id}
    assert_closed(closed, "client", 1000, "connection closed", user="alice", client=client_id)


async def test_close_by_the_server_with_a_code(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as (server, hub):
        async with connect(f"{server.ws_url}/room") as ws:
            client_id = next(iter(hub.sessions_of("bob"))).id
            await ws.send("bye")
            await ws.wait_closed()
            assert ws.close_code == 4001
        await idle(hub)
    connected, closed = lines(caplog)
    assert (connected.levelno, connected.user, connected.client) == (logging.DEBUG, "bob", client_id)  # type: ignore[attr-defined]
    assert_closed(closed, "server", 4001, "done here", user="bob", client=client_id)


async def test_an_invalid_token_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as (server, hub):
        async with ProtocolClient.connected(f"{server.ws_url}/connection/websocket", timeout=WAIT) as client:
            await client.send({"id": 1, "connect": {"token": token("mallory", key="x" * 40)}})
            _, code = await client.closed()
        assert code == 3500
        await idle(hub)
    (refused,) = lines(caplog)
    assert refused.levelno == logging.INFO
    assert refused.getMessage().startswith(
        "connection refused: code 3500 (invalid token: Signature verification failed)"
    )
    assert extras(refused, "user", "code", "reason", "ip") == {
        "user": "",
        "code": 3500,
        "reason": "invalid token: Signature verification failed",
        "ip": "127.0.0.1",
    }
    assert refused.client  # type: ignore[attr-defined]


async def test_a_connection_limit_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog, max_connections_per_user=1) as (server, hub):
        first = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", token=token("alice"))
        async with ProtocolClient.connected(f"{server.ws_url}/connection/websocket", timeout=WAIT) as second:
            await second.send({"id": 1, "connect": {"token": token("alice")}})
            _, code = await second.closed()
        assert code == 3504
        await first.close()
        await idle(hub)
    refusals = [r for r in lines(caplog) if r.levelno == logging.INFO]
    assert len(refusals) == 1
    assert extras(refusals[0], "user", "code", "reason", "ip") == {
        "user": "alice",
        "code": 3504,
        "reason": "connection limit",
        "ip": "127.0.0.1",
    }


async def test_a_limit_before_the_session_names_its_setting(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog, max_connections_per_ip=1) as (server, _hub):
        async with connect(f"{server.ws_url}/room"), connect(f"{server.ws_url}/room") as second:
            await second.wait_closed()
            assert second.close_code == 3504
    (refused,) = [r for r in lines(caplog) if r.levelno == logging.INFO]
    assert refused.getMessage() == (
        "connection refused: code 3504 (connection limit: max_connections_per_ip), user 'bob', client -, ip 127.0.0.1"
    )
    assert extras(refused, "user", "client", "code", "reason") == {
        "user": "bob",
        "client": "",
        "code": 3504,
        "reason": "connection limit",
    }


async def test_a_refused_origin_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as (server, _hub):
        with pytest.raises(InvalidStatus):
            async with connect(f"{server.ws_url}/connection/websocket", origin="https://evil.example"):  # type: ignore[arg-type]
                pass
    (refused,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert (refused.name, refused.levelno) == ("fastapi_realtime.app", logging.WARNING)
    assert "from origin 'https://evil.example'" in refused.getMessage()
    assert extras(refused, "code", "reason", "ip") == {"code": 403, "reason": "origin not allowed", "ip": "127.0.0.1"}


async def test_a_stale_connection_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog, client_stale_close_delay=0.2) as (server, hub):
        async with ProtocolClient.connected(f"{server.ws_url}/connection/websocket", timeout=WAIT) as client:
            _, code = await client.closed()
        assert code == 3502
        await idle(hub)
    (refused,) = lines(caplog)
    assert (refused.levelno, refused.code, refused.reason) == (logging.INFO, 3502, "stale")  # type: ignore[attr-defined]


async def test_no_line_carries_a_token(caplog: pytest.LogCaptureFixture) -> None:
    good, bad = token("alice"), token("mallory", key="y" * 40)
    async with serving(caplog) as (server, hub):
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", token=good)
        await client.close()
        async with ProtocolClient.connected(f"{server.ws_url}/connection/websocket", timeout=WAIT) as refused:
            await refused.send({"id": 1, "connect": {"token": bad}})
            await refused.closed()
        await idle(hub)
    assert len(lines(caplog)) == 3
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in (good, bad, good.split(".")[2], bad.split(".")[2]):
            assert secret not in text


async def test_an_unauthorized_connect_is_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    async with serving(caplog) as (server, hub):
        async with ProtocolClient.connected(f"{server.ws_url}/connection/websocket", timeout=WAIT) as client:
            reply = await client.command("connect", {})
            assert reply["error"]["code"] == 101
        await idle(hub)
    refused, closed = lines(caplog)
    assert refused.levelno == logging.INFO
    assert extras(refused, "code", "reason", "ip") == {"code": 101, "reason": "unauthorized", "ip": "127.0.0.1"}
    assert (closed.levelno, closed.closed_by, closed.client) == (logging.DEBUG, "client", refused.client)  # type: ignore[attr-defined]


def test_the_json_lines_show_the_extras() -> None:
    record = logging.LogRecord(LOGGER, logging.INFO, __file__, 1, "connection refused", None, None)
    for key, value in {
        "user": "alice",
        "client": "c1",
        "code": 3504,
        "reason": "connection limit",
        "ip": "::1",
    }.items():
        setattr(record, key, value)
    SessionContextFilter().filter(record)  # keeps the extras the record carries
    entry = orjson.loads(JSONFormatter().format(record))
    assert entry == {
        "time": entry["time"],
        "level": "info",
        "logger": LOGGER,
        "message": "connection refused",
        "user": "alice",
        "client": "c1",
        "code": 3504,
        "reason": "connection limit",
        "ip": "::1",
    }


async def test_a_hub_never_started_refuses_with_one_info_line_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="fastapi_realtime")
    hub = Hub(HubSettings(), auth=JWTAuth(secret=SECRET))
    app = FastAPI()  # no lifespan=hub.lifespan: the mistake
    app.include_router(hub.router())
    async with running_server(app) as server:
        for _ in range(2):
            async with ProtocolClient.connected(f"{server.ws_url}/connection/websocket", timeout=WAIT) as client:
                _, code = await client.closed()
            assert code == 3004
    refusals = lines(caplog)
    assert [(r.levelno, r.code, r.reason) for r in refusals] == [(logging.INFO, 3004, "internal server error")] * 2  # type: ignore[attr-defined]
    assert refusals[0].getMessage().startswith("connection refused: code 3004 (internal server error: hub not started)")
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1  # the one line naming the fix
