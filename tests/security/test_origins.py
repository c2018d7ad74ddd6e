"""Cross-site WebSocket hijacking: the origin policy, and HTTP 403 at every endpoint of a hub."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from fastapi_realtime import Hub, HubSettings
from fastapi_realtime.origins import OriginPolicy
from security.conftest import ServerLog, quiet_config, serving

ALLOWED = ("https://app.example.com", "https://*.example.org", "http://localhost:3000")


@pytest.mark.parametrize(
    "origin",
    [
        None,  # not a browser
        "https://app.example.com",
        "HTTPS://APP.EXAMPLE.COM",
        "https://app.example.com:443",
        "https://a.example.org",
        "https://a.b.example.org",
        "http://localhost:3000",
        "http://chat.local:8000",  # same origin as the Host header
        "https://chat.local",  # same host, default port of its scheme
    ],
)
def test_origin_policy_allows(origin: str | None) -> None:
    host = "chat.local:8000" if origin == "http://chat.local:8000" else "chat.local"
    assert OriginPolicy(ALLOWED).allows(origin, host)


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "https://evil.example",
        "https://app.example.com.evil.io",
        "https://example.com.evil.io",
        "https://evilexample.org",
        "https://example.org",  # the pattern needs a subdomain
        "http://a.example.org",  # scheme differs
        "https://a.example.org:8443",  # port differs
        "https://app.example.com:8443",
        "http://localhost:3001",
        "https://app.example.com/",  # not a serialized origin
        "https://app.example.com@evil.io",
        "https://*.example.org",
        "",
        "javascript:alert(1)",
        "https://chat.local.evil.io",
        "http://chat.local:8001",
    ],
)
def test_origin_policy_refuses(origin: str) -> None:
    assert not OriginPolicy(ALLOWED).allows(origin, "chat.local")


def test_same_origin_needs_a_host_header() -> None:
    assert not OriginPolicy().allows("https://chat.local", None)
    assert not OriginPolicy().allows("https://chat.local", "chat.local, evil.io")


def test_a_star_turns_the_check_off() -> None:
    assert OriginPolicy(["*"]).allows("https://evil.example", "chat.local")
    assert OriginPolicy(["*"]).allows("null", "chat.local")


@pytest.mark.parametrize(
    "entry", ["example.com", "https://", "https://ex*ample.com", "https://*", "https://a.com/path"]
)
def test_malformed_entries_are_refused_at_configuration(entry: str) -> None:
    with pytest.raises(ValueError, match="allowed"):
        HubSettings(allowed_origins=(entry,))
    with pytest.raises(ValueError, match="tuple"):
        HubSettings(allowed_origins="https://a.com")  # type: ignore[arg-type]


def origin_app(hub: Hub) -> FastAPI:
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path="/connection/uni_websocket"))

    @app.websocket("/tutorial")
    async def tutorial(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            async for text in conn.iter_text():
                await conn.send_text(text)

    @app.websocket("/own", dependencies=[Depends(hub.check_origin)])
    async def own(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            await websocket.receive_text()

    return app


PATHS = ["/connection/websocket", "/connection/uni_websocket", "/tutorial", "/own"]


async def handshake_status(url: str, origin: str | None, **kwargs: Any) -> int:
    try:
        async with connect(url, origin=Origin(origin) if origin else None, open_timeout=5, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_every_endpoint_refuses_a_foreign_origin_with_403_and_one_log_line(server_log: ServerLog) -> None:
    hub = Hub(HubSettings(allow_anonymous=True, allowed_origins=("https://app.example.com",)))
    async with serving(quiet_config(origin_app(hub)), server_log) as server:
        same = f"http://127.0.0.1:{server.port}"
        for path in PATHS:
            url = server.ws_url + path
            for bad in ("https://evil.example", "null", "https://app.example.com.evil.io"):
                assert await handshake_status(url, bad) == 403, (path, bad)
            for good in (None, "https://app.example.com", same):
                assert await handshake_status(url, good) == 101, (path, good)
    refusals = server_log.matching("refused a WebSocket")
    assert len(refusals) == len(PATHS) * 3
    assert all(line.startswith("WARNING fastapi_realtime.app") for line in refusals)


async def test_the_default_allows_only_the_same_origin(server_log: ServerLog) -> None:
    hub = Hub(HubSettings(allow_anonymous=True))
    async with serving(quiet_config(origin_app(hub)), server_log) as server:
        url = server.ws_url + "/tutorial"
        assert await handshake_status(url, f"http://127.0.0.1:{server.port}") == 101
        assert await handshake_status(url, "http://127.0.0.1:1") == 403
        forged_host = Headers({"Host": "evil.example"})
        assert await handshake_status(url, "http://127.0.0.1", additional_headers=forged_host) == 403
