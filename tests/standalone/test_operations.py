"""The server's operations endpoints on a real server: /metrics, /health, /ready, JSON logs."""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis_servers import start_redis
from wsclient import ProtocolClient

from fastapi_realtime.server.logs import JSONFormatter, SessionContextFilter
from standalone.helpers import WAIT, config, metrics, serving


async def test_metrics_change_after_a_connect_subscribe_and_publish() -> None:
    async with serving(config()) as (server, hub, http):
        before = await metrics(http)
        assert before["fastapi_realtime_connections"] == 0
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", ("chat:a",))
        client.timeout = WAIT
        try:
            await client.send({"id": 99, "publish": {"channel": "chat:a", "data": {"n": 1}}})
            messages = [await client.message(), await client.message()]
            assert {"id": 99, "publish": {}} in messages
            during = await metrics(http)
        finally:
            await client.ws.close()
        async with asyncio.timeout(WAIT):
            await hub.wait_idle()
        after = await metrics(http)
    assert during["fastapi_realtime_connections"] == 1
    assert during["fastapi_realtime_subscriptions"] == 1
    assert during["fastapi_realtime_channels"] == 1
    assert during["fastapi_realtime_publications_total"] == 1
    assert during["fastapi_realtime_deliveries_total"] == 1
    assert during['fastapi_realtime_frames_received_total{transport="websocket"}'] >= 2
    assert during['fastapi_realtime_frames_sent_total{transport="websocket"}'] >= 2
    assert during['fastapi_realtime_command_duration_seconds_count{method="publish"}'] == 1
    assert during['fastapi_realtime_command_duration_seconds_count{method="subscribe"}'] == 1
    assert after["fastapi_realtime_connections"] == 0
    assert sum(v for k, v in after.items() if k.startswith("fastapi_realtime_disconnects_total")) == 1


async def test_command_errors_are_counted_by_method_and_code() -> None:
    async with serving(config()) as (server, _hub, http):
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket")
        client.timeout = WAIT
        try:
            reply = await client.command("publish", {"channel": "nowhere:x", "data": 1})
            assert reply["error"]["code"] == 102
        finally:
            await client.ws.close()
        samples = await metrics(http)
    assert samples['fastapi_realtime_command_errors_total{code="102",method="publish"}'] == 1


async def test_two_hubs_in_one_process_have_separate_registries() -> None:
    async with serving(config()) as (server, _hub, http), serving(config()) as (_other, _hub2, http2):
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket")
        try:
            assert (await metrics(http))["fastapi_realtime_connections"] == 1
            assert (await metrics(http2))["fastapi_realtime_connections"] == 0
        finally:
            await client.ws.close()


async def test_metrics_can_be_turned_off() -> None:
    async with serving(config(metrics=False)) as (_server, _hub, http):
        assert (await http.get("/metrics")).status_code == 404


async def test_health_and_ready_on_the_memory_broker() -> None:
    async with serving(config()) as (_server, _hub, http):
        assert (await http.get("/health")).json() == {"status": "ok"}
        ready = await http.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "hub_started": True, "broker": True}


async def test_ready_is_503_while_redis_is_down_and_200_when_it_is_back(tmp_path: Path) -> None:
    redis = await asyncio.to_thread(start_redis, tmp_path)
    try:
        cfg = config(broker=redis.url, redis={"timeout": 1.0})
        async with serving(cfg) as (_server, hub, http):
            assert (await http.get("/ready")).status_code == 200
            states: asyncio.Queue[bool] = asyncio.Queue()
            told = hub.on_broker_state

            def record(up: bool) -> None:
                told(up)
                states.put_nowait(up)

            hub.on_broker_state = record  # type: ignore[method-assign]
            await asyncio.to_thread(redis.stop)
            async with asyncio.timeout(WAIT):
                assert await states.get() is False
            down = await http.get("/ready")
            assert (await http.get("/health")).status_code == 200
            await asyncio.to_thread(redis.start)
            async with asyncio.timeout(3 * WAIT):
                assert await states.get() is True
            up = await http.get("/ready")
            samples = await metrics(http)
    finally:
        await asyncio.to_thread(redis.stop)
    assert down.status_code == 503
    assert down.json() == {"ready": False, "hub_started": True, "broker": False}
    assert up.status_code == 200
    assert samples["fastapi_realtime_broker_outages_total"] == 1
    assert samples["fastapi_realtime_broker_reconnects_total"] == 1
    assert samples["fastapi_realtime_broker_up"] == 1


async def test_json_log_lines_carry_the_client_id_and_user() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SessionContextFilter())
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("fastapi_realtime")
    logger.addHandler(handler)
    async with serving(config(token={"hmac_secret": "s" * 32})) as (server, hub, _http):
        logged = asyncio.Event()

        @hub.rpc("log")
        async def log_something(ctx: Any, data: Any) -> Any:
            logging.getLogger("fastapi_realtime.test").warning("rpc from the client")
            logged.set()
            return {}

        import jwt

        token = jwt.encode({"sub": "alice"}, "s" * 32, algorithm="HS256")
        client = await ProtocolClient.open(f"{server.ws_url}/connection/websocket", token=token)
        client.timeout = WAIT
        try:
            await client.command("rpc", {"method": "log", "data": {}})
            async with asyncio.timeout(WAIT):
                await logged.wait()
            client_id = next(iter(hub.sessions_of("alice"))).id
        finally:
            await client.ws.close()
            logger.removeHandler(handler)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    entry = next(line for line in lines if line["message"] == "rpc from the client")
    assert entry["user"] == "alice"
    assert entry["client"] == client_id
    assert entry["level"] == "warning"
    assert entry["logger"] == "fastapi_realtime.test"


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
async def test_probes_need_no_credentials(path: str) -> None:
    async with serving(config(api_key="k", admin_password="p")) as (_server, _hub, http):
        assert (await http.get(path)).status_code == 200
