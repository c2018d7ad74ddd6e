"""The standalone server turns FastAPI's native OpenTelemetry bridge off (README, "Running the
standalone server"): with a tracer provider configured, a plain FastAPI app asks it for a tracer
on its first request; the server's app never does.

The provider is process-global and set once, so the probe runs in a child Python process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WAIT = 30.0

PROBE = """
import json, sys
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import trace

asked = []

class RecordingProvider(trace.TracerProvider):
    def get_tracer(self, *args, **kwargs):
        asked.append(args[0] if args else "")
        return trace.NoOpTracer()

trace.set_tracer_provider(RecordingProvider())

from fastapi_realtime.server.app import create_app
from fastapi_realtime.server.config import load_config

def asks(app, path):
    asked.clear()
    with TestClient(app) as client:
        assert client.get(path).status_code in (200, 404)
    return bool(asked)

plain = FastAPI()
server = create_app(load_config(overrides={"limits": {"allow_anonymous": True}}, environ={}))
print(json.dumps({"plain": asks(plain, "/"), "server": asks(server, "/health")}))
"""


def test_the_standalone_app_never_asks_opentelemetry_for_a_tracer() -> None:
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=WAIT, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"plain": True, "server": False}
