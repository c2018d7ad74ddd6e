"""Shared helpers of the standalone-server tests: a config, a served app, its metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from servers import RunningServer, running_server

from fastapi_realtime.server.app import create_app
from fastapi_realtime.server.config import ServerConfig, load_config
from fastapi_realtime.server.hub import ServerHub

WAIT = 5.0
CHAT = {"history_size": 10, "presence": True, "allow_publish": True}


def config(**values: Any) -> ServerConfig:
    values.setdefault("limits", {"allow_anonymous": True})
    values.setdefault("namespaces", {"chat": CHAT})
    return load_config(overrides=values, environ={})


@contextlib.asynccontextmanager
async def serving(cfg: ServerConfig) -> AsyncIterator[tuple[RunningServer, ServerHub, httpx.AsyncClient]]:
    app = create_app(cfg)
    async with running_server(app) as server, httpx.AsyncClient(base_url=server.http_url, timeout=WAIT) as http:
        yield server, app.state.hub, http


async def metrics(http: httpx.AsyncClient) -> dict[str, float]:
    """Every sample of /metrics: ``name{label="v",...}`` -> value."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples
