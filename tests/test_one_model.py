"""One model (issue 10 §4): a publication made through the HTTP server API reaches WebSocket,
SSE and HTTP-stream subscribers alike, on every node that shares the Redis broker.

Two hubs on one real ``redis-server``, each on its own uvicorn: node A serves the HTTP API and
the streaming endpoints, node B the protocol WebSocket and the streaming endpoints. One
``POST /api/publish`` to A must reach a subscriber of each kind on both nodes, with the same
offset everywhere.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import orjson
from fastapi import FastAPI
from redis_servers import RedisServer
from servers import RunningServer, running_server
from test_uni_streams import SSEReader, cf_connect
from wsclient import ProtocolClient

from fastapi_realtime import ChannelOptions, Hub, HubSettings, JWTAuth
from fastapi_realtime.brokers.redis import RedisBroker

SECRET = "one-model-tests-secret-of-enough-length"
KEY = "one-model-api-key"
CHANNEL = "news:launch"
SSE = "/connection/uni_sse"
STREAM = "/connection/uni_http_stream"


def token(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET, algorithm="HS256")


@contextlib.asynccontextmanager
async def node(redis_url: str, prefix: str) -> AsyncIterator[RunningServer]:
    hub = Hub(
        HubSettings(namespaces={"": ChannelOptions(), "news": ChannelOptions(history_size=10, history_ttl=60)}),
        auth=JWTAuth(secret=SECRET),
        broker=RedisBroker(redis_url, prefix=prefix, timeout=2.0),
    )
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_sse_path=SSE, uni_http_stream_path=STREAM))
    app.include_router(hub.api_router(api_key=KEY))
    async with running_server(app) as server:
        yield server


async def test_an_api_publication_reaches_websocket_sse_and_http_stream_subscribers_on_every_node(
    redis_server: RedisServer,
) -> None:
    prefix = f"m{uuid.uuid4().hex[:12]}"
    async with (
        node(redis_server.url, prefix) as a,
        node(redis_server.url, prefix) as b,
        httpx.AsyncClient(timeout=10) as http,
        ProtocolClient.connected(f"{b.ws_url}/connection/websocket") as ws,
        contextlib.AsyncExitStack() as streams,
    ):
        await ws.command("connect", {"token": token("ws-user")})
        await ws.command("subscribe", {"channel": CHANNEL})
        readers: dict[str, Any] = {}
        for name, server in (("a", a), ("b", b)):
            sse = await streams.enter_async_context(
                http.stream("GET", server.http_url + SSE + cf_connect({"token": token(f"sse-{name}")}))
            )
            readers[f"sse-{name}"] = SSEReader(sse)
            assert "connect" in await readers[f"sse-{name}"].push()
            stream = await streams.enter_async_context(
                http.stream("POST", server.http_url + STREAM, content=orjson.dumps({"token": token(f"ndjson-{name}")}))
            )
            readers[f"stream-{name}"] = stream.aiter_lines()
            assert "connect" in orjson.loads(await anext(readers[f"stream-{name}"]))
        # The streaming clients subscribe on the server's side: through the API, on every node.
        for user in ("sse-a", "sse-b", "ndjson-a", "ndjson-b"):
            reply = await http.post(
                f"{a.http_url}/api/subscribe", json={"user": user, "channel": CHANNEL}, headers={"X-API-Key": KEY}
            )
            assert reply.json() == {"result": {}}
        for name in ("sse-a", "sse-b"):
            assert (await readers[name].push())["subscribe"] is not None
        for name in ("stream-a", "stream-b"):
            assert "subscribe" in orjson.loads(await anext(readers[name]))

        published = await http.post(
            f"{a.http_url}/api/publish",
            json={"channel": CHANNEL, "data": {"text": "liftoff"}},
            headers={"X-API-Key": KEY},
        )
        offset = published.json()["result"]["offset"]

        received = {"websocket-b": (await ws.next_push())["pub"]}
        for name in ("sse-a", "sse-b"):
            push = await readers[name].push()
            assert push["channel"] == CHANNEL
            received[name] = push["pub"]
        for name in ("stream-a", "stream-b"):
            push = orjson.loads(await anext(readers[name]))
            assert push["channel"] == CHANNEL
            received[name] = push["pub"]
    assert {name: (pub["data"], pub["offset"]) for name, pub in received.items()} == dict.fromkeys(
        received, ({"text": "liftoff"}, offset)
    )
    assert offset == 1
