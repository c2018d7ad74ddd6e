"""Scaling out on Redis, tested as users run it: real uvicorn processes, a real redis-server.

Every server here is ``tests/apps/scaleout_app.py`` (``examples/scaleout.py`` with short
timers) started with ``python -m uvicorn`` in a child process, with ``--workers 4`` or as two
servers on two ports sharing one Redis. Clients are raw Centrifuge-protocol WebSockets and the
official centrifuge-python SDK. Faults are real too: a TCP fault proxy between a node and
Redis, a Redis restarted with and without persistence, a node killed with SIGKILL, a Redis that
is not there at start.

Every fault must be detected and none silent: subscribers either get every publication, in
order, once, or are told (unsubscribe 2500, then ``recovered: false`` and a new epoch), and
each expected fault logs one clear line without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from centrifuge import Client
from faultproxy import FaultProxy
from processes import ServerProcess, server_process, start_server
from redis_servers import RedisServer, free_port, start_redis
from sdk_events import Events
from test_sdk_python import sdk_client, subscribed, take_publications
from wsclient import ProtocolClient

from fastapi_realtime import DisconnectCode

APP = "apps.scaleout_app:app"
WAIT = 10.0
"""Upper bound of every single wait, in seconds (processes on a shared 2-core machine)."""

FAST = {
    "PRESENCE_TTL": "2",
    "PRESENCE_REFRESH": "0.5",
    "POSITION_CHECK_INTERVAL": "0.5",
    "POSITION_CHECK_GRACE": "0.3",
    "REDIS_TIMEOUT": "1",
    "REDIS_PING_INTERVAL": "1",
    "REDIS_BACKOFF_MAX": "0.3",
}
"""Short timers for the test servers (see tests/apps/scaleout_app.py)."""

_channels = itertools.count()


def new_channel() -> str:
    """A channel no other test uses (the session's Redis is shared)."""
    return f"chat:scaleout-{next(_channels)}"


def env(url: str, **extra: str) -> dict[str, str]:
    return {**FAST, "REDIS_URL": url, **extra}


FAULT_LINES = {
    "lost": r"^redis broker: Pub/Sub connection to redis://127\.0\.0\.1:\d+ lost \(.+\); reconnecting$",
    "restored": r"^redis broker: Pub/Sub connection to redis://127\.0\.0\.1:\d+ restored",
    "recovering": r"^position check: \d+ subscriptions in \d+ channels missed publications",
    "refused": r"^publish command of client \w+ failed: Redis at redis://127\.0\.0\.1:\d+ unavailable",
    "upkeep": r"^(presence refresh|position check of \d+ of \d+ channels) failed: .+; retrying in the background$",
}
"""The one line each expected fault logs (uvicorn's own lines start with ``INFO:``)."""


SHUTDOWN_LINE = r"^signal SIG(TERM|INT): closing every client with 3001 before the server shuts down$"
"""The hub's line when the test stops a server (see :mod:`fastapi_realtime.signals`)."""

CLOSING_REFUSAL = r"^connection refused: code 3001 \(shutdown[:)]"
"""A client reconnecting to a server the test is stopping (see :mod:`fastapi_realtime.connlog`)."""


def fault_lines(server: ServerProcess) -> dict[str, int]:
    """How many lines of each kind in :data:`FAULT_LINES` ``server`` logged; fails on a
    traceback or on any other line that is not uvicorn's or the graceful shutdown's."""
    assert "Traceback" not in server.output, server.output
    counts = dict.fromkeys(FAULT_LINES, 0)
    for line in server.lines:
        if line.startswith("INFO:") or re.search(SHUTDOWN_LINE, line) or re.search(CLOSING_REFUSAL, line):
            continue
        kinds = [kind for kind, pattern in FAULT_LINES.items() if re.search(pattern, line)]
        assert kinds, f"unexpected log line {line!r} in:\n{server.output}"
        counts[kinds[0]] += 1
    return counts


def assert_no_traceback(*servers: ServerProcess) -> None:
    for server in servers:
        assert fault_lines(server) == dict.fromkeys(FAULT_LINES, 0)


@contextlib.asynccontextmanager
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=WAIT) as client:
        yield client


class Conn:
    """A raw protocol connection to one worker: who it is and which process serves it."""

    def __init__(self, client: ProtocolClient, user: str, pid: int) -> None:
        self.client = client
        self.user = user
        self.pid = pid


async def open_conn(stack: contextlib.AsyncExitStack, url: str, user: str, channel: str) -> Conn:
    client = await stack.enter_async_context(ProtocolClient.connected(url, answer_pings=True, timeout=WAIT))
    assert "error" not in await client.command("connect", {"data": {"user": user}})
    assert "error" not in await client.command("subscribe", {"channel": channel})
    reply = await client.command("rpc", {"method": "whoami"})
    return Conn(client, user, reply["rpc"]["data"]["pid"])


async def sdk_subscriber(
    stack: contextlib.AsyncExitStack, url: str, channel: str, **client_options: Any
) -> tuple[Client, Events, Events]:
    """A connected centrifuge-python client with a recoverable subscription to ``channel``."""
    client, events = await stack.enter_async_context(sdk_client(url, **client_options))
    await client.connect()
    await client.ready(timeout=WAIT)
    _, sub_events = await subscribed(client, channel, recoverable=True, positioned=True)
    return client, events, sub_events


async def publish(client: httpx.AsyncClient, server: ServerProcess, channel: str, n: int) -> dict[str, Any]:
    response = await client.post(f"{server.http_url}/publish/{channel}", json={"n": n})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def presence_expired(client: httpx.AsyncClient, server: ServerProcess, channel: str, client_id: str) -> None:
    """Wait until ``client_id`` is gone from the presence of ``channel``: polling Redis for an
    expiry (no event announces one), bounded by the presence ttl plus ``WAIT``."""
    async with asyncio.timeout(float(FAST["PRESENCE_TTL"]) + WAIT):
        for _ in itertools.count():
            presence = (await client.get(f"{server.http_url}/presence/{channel}")).json()
            if client_id not in presence["clients"]:
                return
            await asyncio.sleep(0.2)


async def take_numbers(events: Events, count: int) -> list[int]:
    return [p.data["n"] for p in await take_publications(events, count)]


# -- many workers -------------------------------------------------------------------------


async def test_four_workers_share_publications_broadcasts_presence_and_disconnects(redis_server: RedisServer) -> None:
    channel = new_channel()
    async with server_process(APP, env(redis_server.url), workers=4) as server, contextlib.AsyncExitStack() as stack:
        # Connect until all 4 workers hold a connection and user bob is on at least 2 of them.
        conns: list[Conn] = []
        for i in range(80):
            conns.append(await open_conn(stack, server.ws_url, "bob" if i % 2 else f"user{i}", channel))
            bob_pids = {c.pid for c in conns if c.user == "bob"}
            if len({c.pid for c in conns}) == 4 and len(bob_pids) >= 2:
                break
        assert len({c.pid for c in conns}) == 4, "the kernel never spread 80 connections over 4 workers"

        async with http() as client:
            assert (await client.post(f"{server.http_url}/broadcast", json={"hello": "all"})).status_code == 200
            for conn in conns:
                assert await conn.client.next_push() == {"message": {"data": {"hello": "all"}}}

            await publish(client, server, channel, 1)
            for conn in conns:
                push = await conn.client.next_push()
                assert (push["channel"], push["pub"]["data"]) == (channel, {"n": 1})

            presence = (await client.get(f"{server.http_url}/presence/{channel}")).json()
            assert presence["num_clients"] == len(conns)
            assert presence["num_users"] == len({c.user for c in conns})
            stats = await conns[0].client.command("presence_stats", {"channel": channel})
            assert stats["presence_stats"] == {"num_clients": len(conns), "num_users": presence["num_users"]}

            assert (await client.post(f"{server.http_url}/disconnect/bob")).status_code == 200
        for conn in conns:
            if conn.user == "bob":
                _, code = await conn.client.closed()
                assert code == DisconnectCode.FORCE_DISCONNECT
        for conn in conns:  # everyone else is still served
            if conn.user != "bob":
                assert "rpc" in await conn.client.command("rpc", {"method": "whoami"})
    assert_no_traceback(server)


# -- two servers --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def two_servers(url_a: str, url_b: str, **extra: str) -> AsyncIterator[tuple[ServerProcess, ServerProcess]]:
    async with server_process(APP, env(url_a, **extra)) as a, server_process(APP, env(url_b, **extra)) as b:
        yield a, b


async def test_an_sdk_client_on_one_server_gets_what_is_published_on_the_other_in_order(
    redis_server: RedisServer,
) -> None:
    channel = new_channel()
    async with two_servers(redis_server.url, redis_server.url) as (a, b), contextlib.AsyncExitStack() as stack:
        _, _, on_a = await sdk_subscriber(stack, a.ws_url, channel)
        _, _, on_b = await sdk_subscriber(stack, b.ws_url, channel)
        async with http() as client:
            # Sequential publications, alternating between the servers: publish order is 1..40.
            for n in range(1, 41):
                await publish(client, a if n % 2 else b, channel, n)
        assert await take_numbers(on_a, 40) == list(range(1, 41))
        assert await take_numbers(on_b, 40) == list(range(1, 41))
    assert_no_traceback(a, b)


async def test_a_client_that_reconnects_to_the_other_server_recovers_what_it_missed(
    redis_server: RedisServer,
) -> None:
    channel = new_channel()
    async with (
        two_servers(redis_server.url, redis_server.url) as (a, b),
        FaultProxy("127.0.0.1", a.port) as balancer,  # a load balancer, without sticky sessions
        contextlib.AsyncExitStack() as stack,
        http() as client,
    ):
        _, events, sub = await sdk_subscriber(stack, f"ws://127.0.0.1:{balancer.port}/connection/websocket", channel)
        for n in range(1, 4):
            await publish(client, a, channel, n)
        assert await take_numbers(sub, 3) == [1, 2, 3]

        events.hold_reconnect = asyncio.Event()
        balancer.point_to("127.0.0.1", b.port)
        balancer.cut()  # server A drops out of the pool: its connections go
        await events.next("connecting")  # the first connect
        await events.next("connecting")  # the lost connection
        for n in range(4, 9):
            await publish(client, a if n % 2 else b, channel, n)
        events.hold_reconnect.set()

        first, again = await sub.next("subscribed"), await sub.next("subscribed")
        assert (again.was_recovering, again.recovered) == (True, True)
        assert again.stream_position.epoch == first.stream_position.epoch
        await publish(client, b, channel, 9)
        assert await take_numbers(sub, 6) == [4, 5, 6, 7, 8, 9]  # nothing lost, nothing twice, in order
        assert sub.pending("publication") == 0
    assert_no_traceback(a, b)


# -- faults -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def node_behind_a_fault_proxy(
    redis: RedisServer,
) -> AsyncIterator[tuple[FaultProxy, ServerProcess, ServerProcess, httpx.AsyncClient, str, Events]]:
    """Server A reaching Redis through a fault proxy, server B directly, an HTTP client, a
    fresh channel and the subscription events of an SDK client on A subscribed to it."""
    channel = new_channel()
    async with (
        FaultProxy("127.0.0.1", redis.port) as proxy,
        two_servers(f"redis://127.0.0.1:{proxy.port}", redis.url) as (a, b),
        contextlib.AsyncExitStack() as stack,
        http() as client,
    ):
        _, _, sub = await sdk_subscriber(stack, a.ws_url, channel)
        yield proxy, a, b, client, channel, sub


async def test_cutting_a_nodes_redis_connections_while_publishing_leaves_no_silent_hole(
    redis_server: RedisServer,
) -> None:
    count = 200
    async with node_behind_a_fault_proxy(redis_server) as (proxy, a, b, client, channel, sub):
        received = asyncio.create_task(take_numbers(sub, count))
        for n in range(1, count + 1):
            await publish(client, b, channel, n)  # publications enter through B, which stays connected
            if n in (50, 120):
                proxy.cut()  # A loses its Pub/Sub and command connections mid-stream
        # Everything arrives exactly once, in order: live, or recovered after A saw the gap.
        assert await asyncio.wait_for(received, WAIT * 2) == list(range(1, count + 1))

        # A lost tail, which no later publication reveals: A cannot reach Redis while the
        # last publications are made; the position check after its reconnect finds them.
        await a.wait_for(FAULT_LINES["restored"], count=2, timeout=WAIT)
        proxy.refuse()
        proxy.cut()
        await a.wait_for(FAULT_LINES["lost"], count=3, timeout=WAIT)
        for n in range(count + 1, count + 6):
            await publish(client, b, channel, n)
        proxy.accept()
        assert await take_numbers(sub, 5) == list(range(count + 1, count + 6))
        assert sub.pending("publication") == 0
    lines = fault_lines(a)
    assert (lines["lost"], lines["restored"]) == (3, 3)  # one line each, per cut
    assert lines["upkeep"] <= 3
    assert lines["recovering"] >= 1  # at least the tail; a cut mid-stream may be seen on delivery
    assert_no_traceback(b)


async def test_a_stalled_redis_link_is_detected_and_what_it_held_back_is_recovered(
    redis_server: RedisServer,
) -> None:
    async with node_behind_a_fault_proxy(redis_server) as (proxy, a, b, client, channel, sub):
        await publish(client, b, channel, 1)
        assert await take_numbers(sub, 1) == [1]
        proxy.stall()  # packets stop, connections stay open: no error, only silence
        for n in range(2, 6):
            await publish(client, b, channel, n)
        await a.wait_for(FAULT_LINES["lost"], timeout=WAIT)  # A's PING went unanswered
        proxy.resume()
        assert await take_numbers(sub, 4) == [2, 3, 4, 5]
        assert sub.pending("publication") == 0
    lines = fault_lines(a)
    assert (lines["lost"], lines["restored"]) == (1, 1)
    assert lines["upkeep"] <= 1  # the hub's own background calls timed out first, once per outage
    assert_no_traceback(b)


@pytest.mark.parametrize("persistence", [True, False], ids=["history-survives", "history-lost"])
async def test_redis_restarted_mid_stream(tmp_path: Path, persistence: bool) -> None:
    redis = await asyncio.to_thread(start_redis, tmp_path, persistence=persistence)
    channel = new_channel()
    try:
        async with (
            server_process(APP, env(redis.url)) as a,
            contextlib.AsyncExitStack() as stack,
            http() as client,
        ):
            sdk, _, sub = await sdk_subscriber(stack, a.ws_url, channel)
            first = await sub.next("subscribed")
            for n in range(1, 4):
                await publish(client, a, channel, n)
            assert await take_numbers(sub, 3) == [1, 2, 3]

            await asyncio.to_thread(redis.stop)
            # While Redis is down: publishing fails fast and says so; the node reports unhealthy.
            refused = await client.post(f"{a.http_url}/publish/{channel}", json={"n": 0})
            assert refused.status_code == 503
            assert (await client.get(f"{a.http_url}/health")).status_code == 503
            with pytest.raises(Exception) as error:  # the SDK's ReplyError
                await sdk.publish(channel, {"n": 0})
            assert getattr(error.value, "code", None) == 100

            await asyncio.to_thread(redis.start)
            await a.wait_for("Pub/Sub connection to .* restored", timeout=WAIT)
            for n in range(4, 7):
                await publish(client, a, channel, n)
            if persistence:  # nothing lost: the same stream goes on
                assert await take_numbers(sub, 3) == [4, 5, 6]
                assert sub.pending("subscribed") == 0
            else:  # the stream is gone: the client is told, under a new epoch, never handed a gap
                again = await sub.next("subscribed")
                assert (again.was_recovering, again.recovered) == (True, False)
                assert again.stream_position.epoch != first.stream_position.epoch
                # What was published before the resubscribe is not replayed (the app reloads its
                # state); what follows it arrives, from the new position on, without a hole.
                await publish(client, a, channel, 7)
                numbers = await take_numbers(sub, 1)
                while numbers[-1] != 7:
                    numbers += await take_numbers(sub, 1)
                assert numbers == list(range(8 - len(numbers), 8))
            assert (await client.get(f"{a.http_url}/health")).status_code == 200
        lines = fault_lines(a)
        assert (lines["lost"], lines["restored"], lines["refused"]) == (1, 1, 1)
        assert lines["upkeep"] <= 1
    finally:
        await asyncio.to_thread(redis.stop)


async def test_a_killed_node_leaves_presence_within_the_ttl_and_its_clients_recover_elsewhere(
    redis_server: RedisServer,
) -> None:
    channel = new_channel()
    async with (
        two_servers(redis_server.url, redis_server.url) as (a, b),
        FaultProxy("127.0.0.1", a.port) as balancer,
        contextlib.AsyncExitStack() as stack,
        http() as client,
    ):
        sdk, events, sub = await sdk_subscriber(stack, f"ws://127.0.0.1:{balancer.port}/connection/websocket", channel)
        await publish(client, b, channel, 1)
        assert await take_numbers(sub, 1) == [1]
        lost_id = sdk.client_id
        assert lost_id in (await client.get(f"{b.http_url}/presence/{channel}")).json()["clients"]

        events.hold_reconnect = asyncio.Event()
        a.kill()  # kill -9: no goodbye, its presence entries stay in Redis until they expire
        balancer.point_to("127.0.0.1", b.port)
        balancer.cut()
        await events.next("connecting")
        await events.next("connecting")
        for n in range(2, 5):
            await publish(client, b, channel, n)
        await presence_expired(client, b, channel, lost_id)
        events.hold_reconnect.set()

        await sub.next("subscribed")
        again = await sub.next("subscribed")
        assert (again.was_recovering, again.recovered) == (True, True)
        assert await take_numbers(sub, 3) == [2, 3, 4]
        assert sdk.client_id in (await client.get(f"{b.http_url}/presence/{channel}")).json()["clients"]
    assert_no_traceback(b)


async def test_redis_unreachable_at_start_fails_startup_with_the_redacted_url() -> None:
    port = free_port()  # nothing listens there
    server = await start_server(APP, env(f"redis://:hunter2@127.0.0.1:{port}/0"), wait=False)
    code = await server.exited(WAIT * 2)
    assert code != 0
    assert "BrokerUnavailable" in server.output
    assert f"127.0.0.1:{port}" in server.output
    assert "hunter2" not in server.output
