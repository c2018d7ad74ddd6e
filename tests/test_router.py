"""How ``hub.router()`` registers its WebSocket endpoints: plain Starlette routes (no FastAPI
dependency solving per connection) that still honour ``include_router`` prefixes (nested too),
route names, the origin check before accept, the app's exception handlers, and
``hub.router(dependencies=...)``, which makes them FastAPI routes running those dependencies.

A real uvicorn server on a free port; every wait is bounded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from fastapi import APIRouter, Depends, FastAPI, WebSocket, WebSocketException
from servers import running_server_logging_no_errors
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from fastapi_realtime import ConnectContext, Hub, HubSettings

WAIT = 5.0


async def handshake_status(url: str, *, origin: str | None = None, headers: dict[str, str] | None = None) -> int:
    """101 when ``url`` accepts a WebSocket, else the HTTP status of the refusal."""
    try:
        async with connect(
            url, origin=Origin(origin) if origin else None, additional_headers=headers, open_timeout=WAIT
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def connect_reply(url: str, *, first: dict[str, Any] | None = None) -> dict[str, Any]:
    """The first message the server sends after a connect command (or ``first``) on ``url``."""
    async with connect(url, open_timeout=WAIT) as ws, asyncio.timeout(WAIT):
        await ws.send(orjson.dumps(first if first is not None else {"id": 1, "connect": {}}).decode())
        reply: dict[str, Any] = orjson.loads(await ws.recv())
        return reply


def nested_app(hub: Hub) -> FastAPI:
    """The hub's router included under ``/rt`` inside a router included under ``/v1``."""
    app = FastAPI(lifespan=hub.lifespan)
    outer = APIRouter(prefix="/v1")
    outer.include_router(hub.router(uni_path="/connection/uni_websocket"), prefix="/rt")
    app.include_router(outer)
    return app


async def test_the_endpoints_are_plain_starlette_routes_named_after_their_methods() -> None:
    hub = Hub(HubSettings(allow_anonymous=True))
    routes = hub.router(uni_path="/connection/uni_websocket").routes
    assert [type(r) for r in routes] == [WebSocketRoute, WebSocketRoute]
    assert [r.name for r in routes if isinstance(r, WebSocketRoute)] == ["websocket_endpoint", "uni_websocket_endpoint"]
    app = nested_app(hub)
    assert app.url_path_for("websocket_endpoint") == "/v1/rt/connection/websocket"
    assert app.url_path_for("uni_websocket_endpoint") == "/v1/rt/connection/uni_websocket"


async def test_nested_prefixes_serve_both_endpoints_and_only_there(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub(HubSettings(allow_anonymous=True))
    async with running_server_logging_no_errors(nested_app(hub), caplog) as server:
        base = server.ws_url + "/v1/rt"
        reply = await connect_reply(base + "/connection/websocket")
        assert reply["id"] == 1 and reply["connect"]["client"]
        push = await connect_reply(base + "/connection/uni_websocket", first={})
        assert push["connect"]["client"]
        assert await handshake_status(server.ws_url + "/connection/websocket") == 403  # not mounted there


async def test_a_foreign_origin_gets_403_under_a_prefix_and_reaches_the_apps_exception_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(HubSettings(allow_anonymous=True, allowed_origins=("https://app.example.com",)))
    app = nested_app(hub)
    handled: list[str] = []

    @app.exception_handler(WebSocketException)
    async def record(websocket: WebSocket, exc: WebSocketException) -> None:
        handled.append(f"{websocket.url.path} {exc.code} {exc.reason}")
        await websocket.close(exc.code, exc.reason)

    async with running_server_logging_no_errors(app, caplog) as server:
        for path in ("/v1/rt/connection/websocket", "/v1/rt/connection/uni_websocket"):
            assert await handshake_status(server.ws_url + path, origin="https://evil.example") == 403
            assert await handshake_status(server.ws_url + path, origin="https://app.example.com") == 101
    assert handled == [
        "/v1/rt/connection/websocket 1008 origin not allowed",
        "/v1/rt/connection/uni_websocket 1008 origin not allowed",
    ]


async def test_router_dependencies_run_before_each_websocket_connection(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def needs_a_ticket(websocket: WebSocket) -> None:
        calls.append(websocket.url.path)
        if websocket.headers.get("x-ticket") != "ok":
            raise WebSocketException(1008, "no ticket")

    hub = Hub(HubSettings(allow_anonymous=True))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(
        hub.router(uni_path="/connection/uni_websocket", dependencies=[Depends(needs_a_ticket)]), prefix="/rt"
    )
    async with running_server_logging_no_errors(app, caplog) as server:
        for path in ("/rt/connection/websocket", "/rt/connection/uni_websocket"):
            assert await handshake_status(server.ws_url + path) == 403
            assert await handshake_status(server.ws_url + path, headers={"x-ticket": "ok"}) == 101
    assert calls == ["/rt/connection/websocket"] * 2 + ["/rt/connection/uni_websocket"] * 2


async def test_the_connect_hook_still_sees_the_request_headers(caplog: pytest.LogCaptureFixture) -> None:
    hub = Hub(HubSettings(allow_anonymous=True))
    seen: list[dict[str, str]] = []

    @hub.on_connect
    async def remember(ctx: ConnectContext) -> None:
        seen.append(dict(ctx.headers))

    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    async with running_server_logging_no_errors(app, caplog) as server:
        async with (
            connect(
                server.ws_url + "/connection/websocket", additional_headers={"X-Team": "blue"}, open_timeout=WAIT
            ) as ws,
            asyncio.timeout(WAIT),
        ):
            await ws.send(orjson.dumps({"id": 1, "connect": {"headers": {"x-extra": "1"}}}).decode())
            assert orjson.loads(await ws.recv())["connect"]
    assert seen[0]["x-team"] == "blue" and seen[0]["x-extra"] == "1" and seen[0]["host"]


async def test_app_dependencies_are_named_in_one_warning_as_not_running_on_the_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def audit(websocket: WebSocket) -> None:
        calls.append(websocket.url.path)

    hub = Hub(HubSettings(allow_anonymous=True))
    app = FastAPI(lifespan=hub.lifespan, dependencies=[Depends(audit)])
    app.include_router(hub.router())
    async with running_server_logging_no_errors(app, caplog) as server:
        for _ in range(2):
            assert (await connect_reply(server.ws_url + "/connection/websocket"))["connect"]
    assert calls == []
    warnings = [r.getMessage() for r in caplog.records if "dependencies do not run" in r.getMessage()]
    assert warnings == [
        "the app's dependencies do not run on hub.router()'s WebSocket endpoints (/connection/websocket); "
        "to run them before each connection, pass them as hub.router(dependencies=[...])"
    ]
