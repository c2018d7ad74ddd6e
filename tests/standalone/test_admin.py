"""The admin page and its endpoints over HTTP: auth, live counts, presence, publish, disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from wsclient import ProtocolClient

from fastapi_realtime import DisconnectCode
from standalone.helpers import WAIT, config, serving

PASSWORD = "correct horse"
AUTH = ("admin", PASSWORD)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/admin", None),
        ("GET", "/admin/api/overview", None),
        ("POST", "/admin/api/publish", {"channel": "chat:a", "data": 1}),
        ("POST", "/admin/api/disconnect", {"user": "alice"}),
    ],
)
async def test_every_admin_path_is_401_without_the_password(method: str, path: str, body: Any) -> None:
    async with serving(config(admin_password=PASSWORD)) as (_server, _hub, http):
        missing = await http.request(method, path, json=body)
        wrong = await http.request(method, path, json=body, auth=("admin", "wrong"))
        right = await http.request(method, path, json=body, auth=AUTH)
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Basic")
    assert right.status_code == 200


async def test_no_admin_page_without_a_password() -> None:
    async with serving(config()) as (_server, _hub, http):
        assert (await http.get("/admin", auth=AUTH)).status_code == 404


async def test_page_is_served_locally_without_any_cdn() -> None:
    async with serving(config(admin_password=PASSWORD)) as (_server, _hub, http):
        page = (await http.get("/admin", auth=AUTH)).text
    assert "<script>" in page and "/admin/api/" in page
    assert "http://" not in page and "https://" not in page and "src=" not in page


async def test_overview_shows_counts_channels_and_presence() -> None:
    import jwt

    cfg = config(admin_password=PASSWORD, token={"hmac_secret": "k" * 32})
    async with serving(cfg) as (server, _hub, http):
        token = jwt.encode({"sub": "alice"}, "k" * 32, algorithm="HS256")
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", ("chat:room",), token=token)
        try:
            data = (await http.get("/admin/api/overview", auth=AUTH)).json()
        finally:
            await client.close()
    assert data["node"]["num_clients"] == 1
    assert data["node"]["num_users"] == 1
    [channel] = data["channels"]
    assert channel["name"] == "chat:room"
    assert channel["subscribers"] == 1
    assert [p["user"] for p in channel["presence"]] == ["alice"]


async def test_publish_reaches_a_subscriber_and_bad_channels_are_400() -> None:
    async with serving(config(admin_password=PASSWORD)) as (server, _hub, http):
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", ("chat:room",))
        client.timeout = WAIT
        try:
            ok = await http.post("/admin/api/publish", json={"channel": "chat:room", "data": {"t": "hi"}}, auth=AUTH)
            push = await client.next_push()
            unknown = await http.post("/admin/api/publish", json={"channel": "nope:x", "data": 1}, auth=AUTH)
            malformed = await http.post("/admin/api/publish", json={"chan": "x"}, auth=AUTH)
        finally:
            await client.close()
    assert ok.status_code == 200 and ok.json()["offset"] == 1
    assert push["channel"] == "chat:room" and push["pub"]["data"] == {"t": "hi"}
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == 102
    assert malformed.status_code == 422


async def test_disconnect_closes_the_users_connection() -> None:
    import jwt

    cfg = config(admin_password=PASSWORD, token={"hmac_secret": "k" * 32})
    async with serving(cfg) as (server, _hub, http):
        token = jwt.encode({"sub": "bob"}, "k" * 32, algorithm="HS256")
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", token=token)
        client.timeout = WAIT
        response = await http.post("/admin/api/disconnect", json={"user": "bob"}, auth=AUTH)
        _messages, code = await client.closed()
    assert response.status_code == 200
    assert code == DisconnectCode.FORCE_DISCONNECT


async def test_cross_site_and_non_json_posts_are_refused() -> None:
    async with serving(config(admin_password=PASSWORD)) as (_server, _hub, http):
        body = {"channel": "chat:room", "data": 1}
        cross = await http.post("/admin/api/publish", json=body, auth=AUTH, headers={"Origin": "https://evil.example"})
        form = await http.post("/admin/api/publish", data={"channel": "chat:room"}, auth=AUTH)
        same = await http.post(
            "/admin/api/publish", json=body, auth=AUTH, headers={"Origin": str(http.base_url).rstrip("/")}
        )
    assert cross.status_code == 403
    assert form.status_code == 415
    assert same.status_code == 200


async def test_overview_while_clients_come_and_go_never_fails() -> None:
    async with serving(config(admin_password=PASSWORD)) as (server, _hub, http):
        clients = [await ProtocolClient.open(f"{server.ws_url}/connection/websocket", (f"chat:{i}",)) for i in range(5)]
        closing = asyncio.gather(*(c.close() for c in clients))
        responses = await asyncio.gather(*(http.get("/admin/api/overview", auth=AUTH) for _ in range(5)))
        await closing
    assert {r.status_code for r in responses} == {200}
