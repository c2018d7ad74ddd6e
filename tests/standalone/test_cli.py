"""The ``fastapi-realtime`` command end to end, as subprocesses: serve (TOML, Centrifugo JSON,
several workers on Redis), token, check-config, version, SIGTERM, JSON logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from centrifuge import Client
from redis_servers import RedisServer, free_port
from sdk_events import Events

from fastapi_realtime import __version__
from standalone.cli import WAIT, run_cli, serving

SECRET = "0123456789abcdef0123456789abcdef"
CLEAN_EXIT = (0, -signal.SIGTERM)
"""After a graceful shutdown uvicorn re-raises the SIGTERM it caught, as a process should."""


def toml_config(tmp_path: Path, port: int, extra: str = "") -> Path:
    path = tmp_path / "server.toml"
    path.write_text(
        f"""
port = {port}
api_key = "the-api-key"
admin_password = "the-admin-password"
{extra}
[token]
hmac_secret = "{SECRET}"

[limits]
ping_interval = 10
pong_timeout = 5

[namespaces.chat]
history_size = 10
presence = true
allow_publish_for_subscriber = true
"""
    )
    return path


def centrifugo_config(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "client": {
                    "token": {"hmac_secret_key": SECRET},
                    "allowed_origins": ["http://localhost:3000"],
                    "ping_interval": "10s",
                    "pong_timeout": "5s",
                },
                "channel": {
                    "without_namespace": {"presence": True},
                    "namespaces": [
                        {"name": "chat", "history_size": 10, "history_ttl": "300s", "presence": True,
                         "allow_publish_for_subscriber": True},
                    ],
                },
                "http_api": {"key": "the-api-key"},
                "http_server": {"port": str(port)},
                "admin": {"enabled": True, "password": "the-admin-password", "secret": "unused"},
            }
        )
    )  # fmt: skip
    return path


def mint(config: Path, user: str) -> str:
    result = run_cli("token", "-c", str(config), "--user", user, "--ttl", "600")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@contextlib.asynccontextmanager
async def sdk_subscribed(port: int, token: str, channel: str) -> Any:
    events = Events()
    client = Client(f"ws://127.0.0.1:{port}/connection/websocket", events=events, proxy=None, token=token, timeout=WAIT)
    try:
        await client.connect()
        await client.ready(timeout=WAIT)
        sub_events = Events()
        sub = client.new_subscription(channel, events=sub_events)
        await sub.subscribe()
        await sub.ready(timeout=WAIT)
        yield client, sub_events
    finally:
        await client.disconnect()


async def api_publish(port: int, channel: str, data: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        return await http.post(
            f"http://127.0.0.1:{port}/api/publish",
            json={"channel": channel, "data": data},
            headers={"X-API-Key": "the-api-key"},
        )


def test_version_from_python_m_and_the_console_script() -> None:
    result = run_cli("version")
    script = Path(sys.executable).parent / "fastapi-realtime"
    console = subprocess.run([str(script), "version"], capture_output=True, text=True, timeout=WAIT, check=False)
    assert result.stdout == console.stdout == f"fastapi-realtime {__version__}\n"


@pytest.mark.parametrize("make_config", [toml_config, centrifugo_config], ids=["toml", "centrifugo-json"])
async def test_serve_then_a_minted_token_connects_the_sdk_and_sigterm_exits_cleanly(
    tmp_path: Path, make_config: Any
) -> None:
    port = free_port()
    config = make_config(tmp_path, port)
    token = mint(config, "alice")
    with serving("-c", str(config)) as served:
        async with sdk_subscribed(port, token, "chat:room") as (_client, events):
            response = await api_publish(port, "chat:room", {"text": "hi"})
            assert response.status_code == 200, response.text
            publication = await events.next("publication")
            assert publication.pub.data == {"text": "hi"}
            async with httpx.AsyncClient(timeout=WAIT) as http:
                admin = await http.get(
                    f"http://127.0.0.1:{port}/admin/api/overview", auth=("admin", "the-admin-password")
                )
            [channel] = admin.json()["channels"]
            assert [p["user"] for p in channel["presence"]] == ["alice"]
            status = await asyncio.to_thread(served.stop)
    log = served.rest()
    assert status in CLEAN_EXIT
    assert any("Application shutdown complete" in line for line in log)
    assert not any("Traceback" in line for line in log), "\n".join(log)


async def test_sigterm_tells_connected_clients_shutdown(tmp_path: Path) -> None:
    from wsclient import ProtocolClient

    port = free_port()
    config = toml_config(tmp_path, port)
    with serving("-c", str(config)) as served:
        client = await ProtocolClient.open(f"ws://127.0.0.1:{port}/connection/websocket", token=mint(config, "bob"))
        client.timeout = WAIT
        status = await asyncio.to_thread(served.stop)
        _messages, code = await client.closed()
    assert status in CLEAN_EXIT
    assert code == 3001  # shutdown: the SDKs reconnect


async def test_two_workers_share_a_redis_broker(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_server.client().flushall()
    port = free_port()
    config = toml_config(tmp_path, port)
    token = mint(config, "carol")
    with serving("-c", str(config), "--workers", "2", "--broker", redis_server.url, workers=2) as served:
        pids = {line.rsplit("[", 1)[1].rstrip("]") for line in served.log if "Started server process" in line}
        assert len(pids) == 2
        async with sdk_subscribed(port, token, "chat:room") as (_client, events):
            for i in range(6):  # new connections, spread over both workers by the kernel
                assert (await api_publish(port, "chat:room", i)).status_code == 200
            received = [(await events.next("publication")).pub.data for _ in range(6)]
        status = await asyncio.to_thread(served.stop)
    assert received == list(range(6))
    assert status in CLEAN_EXIT


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    port = free_port()
    config = toml_config(tmp_path, port)
    with serving("-c", str(config), "--log-format", "json") as served:
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=WAIT).status_code == 200
        served.wait_for("GET /health")
    lines = [orjson.loads(line) for line in served.rest() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(entry["logger"] == "uvicorn.access" and "/health" in entry["message"] for entry in lines)


def test_check_config_prints_the_effective_config_with_secrets_redacted(tmp_path: Path) -> None:
    config = toml_config(tmp_path, 8123, extra='broker = "redis://:redis-password@127.0.0.1:6379/0"')
    result = run_cli("check-config", str(config), env={"FASTAPI_REALTIME_LIMITS__MAX_CONNECTIONS": "77"})
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    for secret in (SECRET, "the-api-key", "the-admin-password", "redis-password"):
        assert secret not in result.stdout
    assert printed["api_key"] == printed["admin_password"] == printed["token"]["hmac_secret"] == "**********"
    assert printed["broker"] == "redis://**********@127.0.0.1:6379/0"
    assert printed["port"] == 8123
    assert printed["limits"]["max_connections"] == 77
    assert printed["limits"]["client_queue_max_bytes"] == 1024 * 1024  # every limit, defaults included
    assert printed["namespaces"]["chat"]["history_size"] == 10


def test_check_config_of_a_centrifugo_file(tmp_path: Path) -> None:
    result = run_cli("check-config", str(centrifugo_config(tmp_path, 9001)))
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["port"] == 9001
    assert printed["allowed_origins"] == ["http://localhost:3000"]
    assert printed["limits"]["ping_interval"] == 10.0
    assert printed["namespaces"][""]["presence"] is True
    assert printed["namespaces"]["chat"]["allow_publish_for_subscriber"] is True
    assert printed["namespaces"]["chat"]["history_ttl"] == 300.0


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = toml_config(tmp_path, 1111)
    env = {"FASTAPI_REALTIME_PORT": "2222"}
    from_env = json.loads(run_cli("check-config", str(config), env=env).stdout)
    from_flag = json.loads(run_cli("check-config", str(config), "--set", "port=3333", env=env).stdout)
    assert (from_env["port"], from_flag["port"]) == (2222, 3333)


@pytest.mark.parametrize(
    ("file_name", "content", "env", "named"),
    [
        ("a.toml", "[limits]\nmax_conections = 5\n", {}, "limits.max_conections"),
        ("a.toml", "prot = 1\n", {}, "prot"),
        ("a.toml", "[namespaces.chat]\nhistroy_size = 5\n", {}, "namespaces.chat.histroy_size"),
        ("a.toml", "", {"FASTAPI_REALTIME_LIMTS__X": "1"}, "FASTAPI_REALTIME_LIMTS__X"),
        ("a.json", '{"client": {"token": {"hmac_secret_key": "x", "jwks_public_endpoint": "u"}}}', {},
         "client.token.jwks_public_endpoint"),
        ("a.json", '{"channel": {"namespaces": [{"name": "n", "auto_cache_recovery": true}]}}', {},
         "auto_cache_recovery"),
        ("a.yaml", "engine:\n  type: nats\n", {}, "engine.type"),
        ("a.yaml", "consumers: []\n", {}, "consumers"),
    ],
)  # fmt: skip
def test_unknown_or_unsupported_keys_are_errors_that_name_the_key(
    tmp_path: Path, file_name: str, content: str, env: dict[str, str], named: str
) -> None:
    path = tmp_path / file_name
    path.write_text(content)
    result = run_cli("check-config", str(path), env=env)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[limits]\nping_interval = 5\npong_timeout = 8\n", "pong_timeout must be shorter than ping_interval"),
        ('broker = "mysql://x"\n', "broker"),
        ("port = 70000\n", "port"),
        ("[limits]\nmax_connections = -1\n", "max_connections"),
        ('[token]\nhmac_secret = "a"\npublic_key = "b"\n', "exactly one of secret"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_invalid_values_are_errors_that_say_why(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    result = run_cli("check-config", str(path))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_workers_with_the_memory_broker_are_refused(tmp_path: Path) -> None:
    result = run_cli("serve", "-c", str(toml_config(tmp_path, free_port())), "--workers", "2")
    assert result.returncode == 2
    assert "needs a Redis broker" in result.stderr


def test_unreachable_redis_is_one_line_and_exit_3(tmp_path: Path) -> None:
    config = toml_config(tmp_path, free_port())
    result = run_cli(
        "serve", "-c", str(config), "--broker", f"redis://127.0.0.1:{free_port()}", "--set", "redis.timeout=1"
    )
    assert result.returncode == 3
    assert "cannot start: cannot reach Redis" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_needs_an_hmac_secret(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("")
    result = run_cli("token", "-c", str(path), "--user", "alice")
    assert result.returncode == 2
    assert "hmac_secret" in result.stderr


def test_token_claims(tmp_path: Path) -> None:
    import jwt

    config = toml_config(tmp_path, 8000)
    result = run_cli("token", "-c", str(config), "--user", "dave", "--channels", "news", "chat:x", "--info", '{"n": 1}')
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "dave"
    assert claims["channels"] == ["news", "chat:x"]
    assert claims["info"] == {"n": 1}
    assert 3500 < claims["exp"] - __import__("time").time() <= 3600


def test_an_insecure_hub_without_its_environment_variable_is_one_line_and_exit_3(tmp_path: Path) -> None:
    result = run_cli("serve", "-c", str(toml_config(tmp_path, free_port())), "--set", "limits.insecure=true")
    assert result.returncode == 3
    assert "cannot start: HubSettings(insecure=True)" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_warns_when_no_client_could_connect(tmp_path: Path) -> None:
    path = tmp_path / "open.toml"
    path.write_text(f"port = {free_port()}\n")
    with serving("-c", str(path)) as served:
        pass
    assert any("every client connect will be refused with 101" in line for line in served.rest())
