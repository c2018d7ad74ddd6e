"""The README's deployment recipes are the repository's files, and they run here: the
Dockerfile's CMD and HEALTHCHECK, the systemd unit's ExecStart, the nginx config in front of
a real server (when nginx is installed), and the README's TOML example."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from centrifuge import Client
from redis_servers import free_port
from sdk_events import Events

from standalone.cli import WAIT, clean_env, run_cli, running

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "fastapi-realtime.service"
NGINX = ROOT / "deploy" / "nginx.conf"
CONFIG_PATH = "/etc/fastapi-realtime/config.toml"
SECRET = "0123456789abcdef0123456789abcdef"


def script() -> str:
    """The installed console script."""
    return str(Path(sys.executable).parent / "fastapi-realtime")


def config_file(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'port = {port}\napi_key = "the-api-key"\n[token]\nhmac_secret = "{SECRET}"\n'
        "[namespaces.chat]\nhistory_size = 10\n"
    )
    return path


def instruction(name: str) -> list[str]:
    """The JSON (exec form) argument list of a Dockerfile instruction."""
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith(f"{name} "):
            rest = line[len(name) + 1 :]
            return list(json.loads(rest[rest.index("[") :]))
    raise AssertionError(f"no {name} in the Dockerfile")


@pytest.mark.parametrize("path", [DOCKERFILE, UNIT, NGINX], ids=lambda p: p.name)
def test_the_readme_shows_each_deployment_file_as_it_is(path: Path) -> None:
    assert f"```text\n{path.read_text()}```" in README


def test_the_readmes_toml_example_is_a_valid_config(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(host = .*?)```", README, re.S)
    assert block is not None
    path = tmp_path / "server.toml"
    path.write_text(block.group(1))
    result = run_cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["namespaces"]["chat"]["join_leave"] is True


def test_the_dockerfile_installs_the_server_extra_and_runs_the_console_script() -> None:
    text = DOCKERFILE.read_text()
    assert 'pip install --no-cache-dir ".[server]"' in text
    assert instruction("ENTRYPOINT") == ["fastapi-realtime"]
    assert instruction("CMD")[:3] == ["serve", "--config", CONFIG_PATH]


def test_the_images_cmd_and_healthcheck_run_here(tmp_path: Path) -> None:
    port = free_port()
    swap = {CONFIG_PATH: str(config_file(tmp_path, port)), "0.0.0.0": "127.0.0.1", "8000": str(port)}
    argv = [script()] + [swap.get(arg, arg) for arg in instruction("CMD")]
    health = [sys.executable if a == "python" else a.replace(":8000/", f":{port}/") for a in instruction("HEALTHCHECK")]
    with running(argv):
        check = subprocess.run(health, capture_output=True, text=True, timeout=WAIT, check=False, env=clean_env())
    assert check.returncode == 0, check.stderr


def test_the_units_execstart_runs_here(tmp_path: Path) -> None:
    [exec_start] = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0].endswith("/bin/fastapi-realtime")
    port = free_port()
    argv = [script()] + [str(config_file(tmp_path, port)) if a == CONFIG_PATH else a for a in argv[1:]]
    with running(argv):
        result = subprocess.run(
            [sys.executable, "-c", f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/health')"],
            timeout=WAIT,
            check=False,
        )
    assert result.returncode == 0


@contextlib.contextmanager
def nginx_in_front(tmp_path: Path, upstream: int) -> Iterator[int]:
    """deploy/nginx.conf run by a real nginx, listening on a free port, proxying to ``upstream``."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (.ci/run installs it)")
        pytest.skip("nginx is not installed")
    port = free_port()
    site = NGINX.read_text().replace("listen 8080;", f"listen 127.0.0.1:{port};")
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
    temp = "".join(
        f"{kind}_temp_path {tmp_path}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\nerror_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\n"
        + "events { worker_connections 64; }\n"
        + f"http {{\naccess_log {tmp_path}/access.log;\n{temp}{site}\n}}\n"
    )
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"])
    try:
        yield port
    finally:
        process.terminate()
        process.wait(WAIT)


async def test_an_sdk_client_through_nginx_connects_and_receives(tmp_path: Path) -> None:
    upstream = free_port()
    config = config_file(tmp_path, upstream)
    token = run_cli("token", "-c", str(config), "--user", "alice").stdout.strip()
    with running([script(), "serve", "-c", str(config)]), nginx_in_front(tmp_path, upstream) as port:
        events, sub_events = Events(), Events()
        client = Client(f"ws://127.0.0.1:{port}/connection/websocket", events=events, proxy=None, token=token,
                        timeout=WAIT, max_reconnect_delay=0.5)  # fmt: skip
        try:
            await client.connect()  # retries until nginx listens
            await client.ready(timeout=WAIT)
            sub = client.new_subscription("chat:room", events=sub_events)
            await sub.subscribe()
            await sub.ready(timeout=WAIT)
            async with httpx.AsyncClient(timeout=WAIT) as http:  # the HTTP API, through nginx too
                response = await http.post(
                    f"http://127.0.0.1:{port}/api/publish",
                    json={"channel": "chat:room", "data": {"via": "nginx"}},
                    headers={"X-API-Key": "the-api-key"},
                )
            publication = await sub_events.next("publication")
        finally:
            await client.disconnect()
    assert response.status_code == 200, response.text
    assert publication.pub.data == {"via": "nginx"}
