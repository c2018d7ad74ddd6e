"""Tokens: where JWTAuth reads them, that forged ones are refused, and that none reaches a log line."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import urllib.parse
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI, WebSocket
from websockets.asyncio.client import connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wsclient import ProtocolClient

from fastapi_realtime import Credentials, Hub, HubSettings, JWTAuth, install_log_redaction, uvicorn_config
from fastapi_realtime.logredact import RedactingFilter, redact
from security.conftest import ServerLog, serving

SECRET = "a-secret-of-at-least-32-bytes-long!!"
PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = (
    PRIVATE.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def hs256(sub: str, key: str = SECRET, **claims: Any) -> str:
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600, **claims}, key, algorithm="HS256")


def token_app(auth: JWTAuth) -> tuple[Hub, FastAPI]:
    hub = Hub(HubSettings(), auth=auth)
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path="/connection/uni_websocket"))

    @app.websocket("/whoami")
    async def whoami(websocket: WebSocket, creds: Credentials = Depends(auth)) -> None:  # noqa: B008
        async with hub.connection(websocket, user=creds.user) as conn:
            await conn.send_text(conn.user)
            await conn.receive()

    @app.websocket("/first")
    async def first(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            creds = await auth.first_message(conn, within=2.0)
            await conn.send_text(creds.user)
            await conn.receive()

    @app.get("/page")
    async def page() -> dict[str, str]:
        return {"ok": "yes"}

    return hub, app


async def whoami(url: str, **kwargs: Any) -> str:
    async with connect(url, open_timeout=5, **kwargs) as ws:
        reply = await ws.recv()
        assert isinstance(reply, str)
        return reply


async def test_tokens_never_reach_the_logs_of_a_real_run(server_log: ServerLog) -> None:
    auth = JWTAuth(secret=SECRET, cookie="rt_token")
    hub, app = token_app(auth)
    tokens = {name: hs256(name) for name in ("query", "header", "cookie", "first", "protocol", "uni", "http", "bad")}
    config = uvicorn_config(app, hub=hub, log_level="info", access_log=True, ws_ping_interval=None)
    async with serving(config, server_log) as server:
        base = server.ws_url
        assert await whoami(f"{base}/whoami?token={tokens['query']}") == "query"
        bearer = Headers({"Authorization": f"Bearer {tokens['header']}"})
        assert await whoami(f"{base}/whoami", additional_headers=bearer) == "header"
        cookie = Headers({"Cookie": f"rt_token={tokens['cookie']}"})
        assert await whoami(f"{base}/whoami", additional_headers=cookie) == "cookie"
        async with connect(f"{base}/first", open_timeout=5) as ws:
            await ws.send(orjson.dumps({"token": tokens["first"]}).decode())
            assert await ws.recv() == "first"
        client = await ProtocolClient.open(
            f"{base}/connection/websocket?token={tokens['protocol']}", token=tokens["protocol"]
        )
        await client.close()
        cf_connect = urllib.parse.quote(orjson.dumps({"token": tokens["uni"]}).decode())
        async with connect(f"{base}/connection/uni_websocket?cf_connect={cf_connect}", open_timeout=5) as ws:
            assert "connect" in orjson.loads(await ws.recv())
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{server.http_url}/page?a=1&token={tokens['http']}&b=2")).status_code == 200
        with pytest.raises(InvalidStatus):  # a refused handshake is logged too
            await whoami(f"{base}/whoami?token={tokens['bad'][:-4]}")
    everything = "\n".join(server_log.lines)
    leaked = [name for name, token in tokens.items() if token.split(".")[1] in everything]  # the claims part
    assert not leaked, f"tokens in the logs: {leaked}"
    assert len(server_log.matching("[redacted]")) >= 5, everything  # the URLs were logged, redacted
    assert server_log.matching('"GET /page?a=1&token=[redacted]&b=2 HTTP/1.1" 200')


@pytest.mark.parametrize("message", ["", "{not json", '{"token": 5}', "[]", "x.y.z"])
async def test_a_bad_first_message_closes_with_1008(server_log: ServerLog, message: str) -> None:
    hub, app = token_app(JWTAuth(secret=SECRET))
    async with serving(uvicorn_config(app, hub=hub, log_level="info", ws_ping_interval=None), server_log) as server:
        async with connect(f"{server.ws_url}/first", open_timeout=5) as ws:
            await ws.send(message)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def alg_none(sub: str) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'sub': sub, 'exp': int(time.time()) + 600})}."


def hs_rs_confusion(sub: str) -> str:
    """HS256 signed with the RS256 public key as the secret (the classic key confusion)."""
    payload = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': sub, 'exp': int(time.time()) + 600})}"

    sig = hmac.new(PUBLIC_PEM.encode(), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


FORGED = {
    "alg none": (SECRET, alg_none),
    "wrong key": (SECRET, lambda sub: hs256(sub, key="another-secret-of-at-least-32-bytes!!")),
    "HS/RS confusion": (PUBLIC_PEM, hs_rs_confusion),
    "RS256 with another key": (
        PUBLIC_PEM,
        lambda sub: jwt.encode(
            {"sub": sub},
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            algorithm="RS256",
        ),
    ),
    "expired": (SECRET, lambda sub: jwt.encode({"sub": sub, "exp": int(time.time()) - 60}, SECRET, "HS256")),
    "truncated": (SECRET, lambda sub: hs256(sub)[:-10]),
}


@pytest.mark.parametrize("case", list(FORGED))
async def test_forged_tokens_are_refused_on_every_path(server_log: ServerLog, case: str) -> None:
    key, forge = FORGED[case]
    auth = JWTAuth(secret=key) if key == SECRET else JWTAuth(public_key=key)
    hub, app = token_app(auth)
    token = forge("mallory")
    async with serving(uvicorn_config(app, hub=hub, log_level="info", ws_ping_interval=None), server_log) as server:
        with pytest.raises(InvalidStatus) as refused:  # the dependency: before accept
            await whoami(f"{server.ws_url}/whoami?token={token}")
        assert refused.value.response.status_code == 403
        async with ProtocolClient.connected(f"{server.ws_url}/connection/websocket") as client:
            await client.send({"id": 1, "connect": {"token": token}})
            if case == "expired":
                assert (await client.message())["error"]["code"] == 109  # the SDK fetches a new token
            else:
                assert (await client.closed())[1] == 3500
        async with connect(f"{server.ws_url}/first", open_timeout=5) as ws:
            await ws.send(token)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"GET /ws?token=abc.def HTTP/1.1"', '"GET /ws?token=[redacted] HTTP/1.1"'),
        ("/a?x=1&TOKEN=abc&cf_connect=%7B%7D&y=2", "/a?x=1&TOKEN=[redacted]&cf_connect=[redacted]&y=2"),
        ("/a?mytoken=keep&token_type=keep", "/a?mytoken=keep&token_type=keep"),
        ("token=abc", "token=[redacted]"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_messages_and_arguments_and_installs_once() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s "%s"', ("1.2.3.4", "/ws?token=t"), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == '1.2.3.4 "/ws?token=[redacted]"'
    named = logging.LogRecord("x", logging.INFO, "", 0, "%(url)s", None, None)
    named.args = {"url": "/ws?cf_connect=secret"}
    RedactingFilter().filter(named)
    assert named.getMessage() == "/ws?cf_connect=[redacted]"
    install_log_redaction(["myapp.requests"])
    install_log_redaction(["myapp.requests"])
    filters = logging.getLogger("myapp.requests").filters
    assert sum(isinstance(f, RedactingFilter) for f in filters) == 1
    assert any(isinstance(f, RedactingFilter) for f in logging.getLogger("fastapi_realtime.hub").filters)


async def test_the_query_parameter_can_be_turned_off(server_log: ServerLog) -> None:
    auth = JWTAuth(secret=SECRET, query_param=None)
    hub, app = token_app(auth)
    async with serving(uvicorn_config(app, hub=hub, log_level="info", ws_ping_interval=None), server_log) as server:
        with pytest.raises(InvalidStatus):
            await whoami(f"{server.ws_url}/whoami?token={hs256('query')}")
        bearer = Headers({"Authorization": f"Bearer {hs256('header')}", "Cookie": f"rt_token={hs256('cookie')}"})
        assert await whoami(f"{server.ws_url}/whoami?token={hs256('query')}", additional_headers=bearer) == "header"
