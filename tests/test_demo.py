"""The demo's server side: pages, token endpoint, vendored SDK, namespace check, ticker task.

The pages themselves are exercised in a real browser by ``tests/browser/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser.demo_harness import require_browser

from fastapi_realtime import ChannelOptions, Hub, HubSettings, StreamPosition
from fastapi_realtime.server.app import create_app
from fastapi_realtime.server.config import ServerConfig, load_config
from fastapi_realtime.server.demo import (
    DEMO_NAMESPACES,
    STATIC,
    TICKER_CHANNEL,
    TOKEN_TTL,
    check_namespaces,
    run_ticker,
)

ROOT = Path(__file__).parent.parent
DEMO_CONFIG = ROOT / "examples" / "demo.toml"
NPM_SDK = ROOT / "tests" / "js" / "node_modules" / "centrifuge"


def demo_config(**overrides: Any) -> ServerConfig:
    return load_config(DEMO_CONFIG, {"demo": True, **overrides}, environ={})


@pytest.fixture
async def demo_client() -> AsyncIterator[tuple[httpx.AsyncClient, Hub]]:
    app = create_app(demo_config())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        yield client, app.state.hub


def test_vendored_centrifuge_js_is_the_pinned_npm_packages_browser_build() -> None:
    pinned = json.loads((ROOT / "tests" / "js" / "package.json").read_text())["dependencies"]["centrifuge"]
    assert json.loads((NPM_SDK / "package.json").read_text())["version"] == pinned, "run npm ci --prefix tests/js"
    assert (STATIC / "centrifuge.js").read_bytes() == (NPM_SDK / "dist" / "centrifuge.js").read_bytes()
    assert (STATIC / "centrifuge.LICENSE").read_bytes() == (NPM_SDK / "LICENSE").read_bytes()
    assert f"centrifuge` {pinned}" in (STATIC / "README.md").read_text()


async def test_the_demo_serves_its_pages_and_the_sdk_locally(demo_client: tuple[httpx.AsyncClient, Hub]) -> None:
    client, _ = demo_client
    for path in ("/", "/ticker"):
        page = await client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert '<script src="/demo/static/centrifuge.js">' in page.text
        assert "//cdn" not in page.text and "https://" not in page.text
    sdk = await client.get("/demo/static/centrifuge.js")
    assert sdk.status_code == 200 and sdk.content == (STATIC / "centrifuge.js").read_bytes()
    for script in ("common.js", "chat.js", "ticker.js", "demo.css", "centrifuge.LICENSE"):
        assert (await client.get(f"/demo/static/{script}")).status_code == 200
    assert (await client.get("/demo/static/../demo.py")).status_code == 404
    assert (await client.get("/demo/static/missing.js")).status_code == 404


async def test_the_token_endpoint_mints_a_short_lived_token_for_a_nickname(
    demo_client: tuple[httpx.AsyncClient, Hub],
) -> None:
    client, hub = demo_client
    reply = await client.post("/demo/token", json={"user": "ada lovelace"})
    assert reply.status_code == 200 and reply.json()["expires_in"] == TOKEN_TTL
    assert hub.auth is not None
    credentials = hub.auth.connection(reply.json()["token"])
    assert credentials.user == "ada lovelace"
    assert time.time() < credentials.expire_at <= time.time() + TOKEN_TTL + 1


@pytest.mark.parametrize("body", [{"user": ""}, {"user": "x" * 33}, {"user": "<script>"}, {"user": 7}, {}])
async def test_the_token_endpoint_refuses_bad_nicknames_with_422(
    demo_client: tuple[httpx.AsyncClient, Hub], body: dict[str, Any]
) -> None:
    client, _ = demo_client
    assert (await client.post("/demo/token", json=body)).status_code == 422


async def test_demo_tokens_carry_the_audience_and_issuer_the_server_requires() -> None:
    config = demo_config(token={"audience": "chat", "issuer": "demo"})
    app = create_app(config)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        token = (await client.post("/demo/token", json={"user": "bob"})).json()["token"]
    assert app.state.hub.auth.connection(token).user == "bob"


def test_the_demo_without_an_hmac_secret_is_refused_with_the_key_to_set() -> None:
    config = load_config(None, {"demo": True, "namespaces": {"chat": {}, "ticker": {}}}, environ={})
    with pytest.raises(ValueError, match=r"token\.hmac_secret"):
        create_app(config)


def test_check_namespaces_names_every_missing_option() -> None:
    hub = Hub(HubSettings(namespaces={"": ChannelOptions(), "chat": ChannelOptions(history_size=10, presence=True)}))
    with pytest.raises(ValueError, match="demo needs") as info:
        check_namespaces(hub)
    assert "namespaces.chat.join_leave = true" in str(info.value)
    assert "namespaces.chat.allow_publish_for_subscriber = true" in str(info.value)
    assert "namespaces.ticker " in str(info.value) and "chat.presence" not in str(info.value)
    check_namespaces(Hub(HubSettings(namespaces=DEMO_NAMESPACES)))


class PublishCountingHub(Hub):
    """A real hub that also reports each publication's position on a queue."""

    def __init__(self, settings: HubSettings) -> None:
        super().__init__(settings)
        self.published: asyncio.Queue[StreamPosition] = asyncio.Queue()

    async def publish(self, channel: str, data: Any, **options: Any) -> StreamPosition:
        position = await super().publish(channel, data, **options)
        self.published.put_nowait(position)
        return position


async def test_the_ticker_task_publishes_numbered_quotes_to_the_ticker_channel() -> None:
    async with PublishCountingHub(HubSettings(namespaces=DEMO_NAMESPACES)) as hub:
        task = asyncio.create_task(run_ticker(hub, interval=0.01))
        try:
            for _ in range(3):
                await asyncio.wait_for(hub.published.get(), 5)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        pubs = (await hub.history(TICKER_CHANNEL)).publications
    ticks = [json.loads(p.data) if isinstance(p.data, bytes | str) else p.data for p in pubs]
    assert [t["seq"] for t in ticks][:3] == [1, 2, 3]
    assert {q["symbol"] for q in ticks[0]["quotes"]} == {"ACME", "GLOBEX", "INITECH", "UMBRELLA"}
    assert all(q["price"] > 0 for t in ticks for q in t["quotes"])


def test_browser_tests_skip_without_chromium_locally_and_fail_under_ci(tmp_path: Path) -> None:
    absent = tmp_path / "chromium"
    with pytest.raises(pytest.skip.Exception, match=r"chromium not found \(apt-get install -y chromium"):
        require_browser(absent, {})
    with pytest.raises(pytest.fail.Exception, match="browser tests must run under CI"):
        require_browser(absent, {"CI": "true"})
    require_browser(Path(sys.executable), {"CI": "true"})  # present: nothing to say


def test_serve_demo_with_a_config_that_lacks_what_it_needs_exits_2_with_one_line() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fastapi_realtime", "serve", "--demo", "--port", "0", "--set", "namespaces.chat={}"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("FASTAPI_REALTIME_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr == "fastapi-realtime: the demo mints HS256 tokens for nicknames: set token.hmac_secret\n"
