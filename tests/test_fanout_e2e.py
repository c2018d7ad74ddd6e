"""Fan-out over real WebSockets: many clients, a stalled client, connect/disconnect churn."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI
from servers import running_server
from wsclient import ProtocolClient, StalledClient, gather_limited

from fastapi_realtime import ChannelOptions, Hub, HubSettings

pytestmark = pytest.mark.timeout(300)


def make_app(**settings: object) -> tuple[Hub, FastAPI]:
    namespaces = {"": ChannelOptions(), "chat": ChannelOptions(presence=True, join_leave=True, history_size=10)}
    # Every client here comes from 127.0.0.1: lift the per-IP limits, which would refuse them.
    per_ip: dict[str, object] = {
        "max_connections_per_ip": 20_000,
        "connect_rate_per_ip": 1e6,
        "connect_burst_per_ip": 20_000,
    }
    hub = Hub(HubSettings(allow_anonymous=True, namespaces=namespaces, **per_ip, **settings))  # type: ignore[arg-type]
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    return hub, app


async def test_fan_out_to_1000_clients_loses_nothing_and_keeps_order() -> None:
    hub, app = make_app()
    clients_count, messages = 1000, 20
    async with running_server(app) as server:
        url = server.ws_url + "/connection/websocket"
        clients = await gather_limited([ProtocolClient.open(url, ("news",)) for _ in range(clients_count)], 100)
        assert hub.stats["subscriptions"] == clients_count
        for i in range(messages):
            await hub.publish("news", {"i": i})

        async def receive_all(client: ProtocolClient) -> list[int]:
            return [(await client.next_push())["pub"]["data"]["i"] for _ in range(messages)]

        async with asyncio.timeout(120):
            received = await asyncio.gather(*(receive_all(c) for c in clients))
        assert all(r == list(range(messages)) for r in received)
        await gather_limited([c.close() for c in clients], 100)
        async with asyncio.timeout(30):
            await hub.wait_idle()
        assert hub.stats["subscriptions"] == 0


async def test_a_client_that_never_reads_does_not_slow_the_others() -> None:
    hub, app = make_app(client_queue_max_bytes=256 * 1024, shutdown_timeout=60.0, ping_interval=0)
    messages, size = 400, 16 * 1024
    async with running_server(app) as server:
        url = server.ws_url + "/connection/websocket"
        fast = [await ProtocolClient.open(url, ("news",)) for _ in range(5)]
        # The stalled client is a raw socket with a tiny receive window that never reads after
        # the handshake, so TCP pushes back on the server as a dead or jammed client would.
        before = set(hub._sessions)
        stalled = await StalledClient.open(server.port, "/connection/websocket", ("news",))
        (stalled_id,) = set(hub._sessions) - before
        stalled_session = hub._sessions[stalled_id]
        payload = "x" * size
        progress = [-1] * len(fast)
        advanced = asyncio.Condition()

        async def receive_all(n: int, client: ProtocolClient) -> int:
            for i in range(messages):
                push = await client.next_push()
                assert push["pub"]["data"]["i"] == i
                async with advanced:
                    progress[n] = i
                    advanced.notify_all()
            return messages

        started = time.monotonic()
        readers = [asyncio.create_task(receive_all(n, c)) for n, c in enumerate(fast)]
        async with asyncio.timeout(60):
            for i in range(messages):
                async with advanced:  # the fast clients keep up within a few messages
                    await advanced.wait_for(lambda i=i: min(progress) >= i - 4)
                await hub.publish("news", {"i": i, "pad": payload})
            assert await asyncio.gather(*readers) == [messages] * len(fast)
        elapsed = time.monotonic() - started
        # The stalled client was cut off by its queue limit; reading now shows the close code.
        async with asyncio.timeout(60):
            assert await stalled.read_close_code() == 3008
        assert stalled_session.queued_bytes == 0
        print(f"5 readers got {messages} x {size // 1024} KiB each in {elapsed:.2f}s while one client stalled")
        for c in fast:
            await c.close()


async def test_10000_connect_disconnect_cycles_leave_nothing_behind() -> None:
    hub, app = make_app()
    cycles = 10_000
    async with running_server(app) as server:
        url = server.ws_url + "/connection/websocket"
        warm_up = await ProtocolClient.open(url)  # the app has started once a client got in
        await warm_up.close()
        await hub.wait_idle()
        baseline_tasks = asyncio.all_tasks()

        async def cycle(i: int) -> None:
            client = await ProtocolClient.open(url, ("chat:room", f"chat:own{i % 50}"))
            if i % 2:
                await client.close()  # a clean close handshake
            else:
                client.ws.transport.abort()  # an abrupt drop, no close frame

        await gather_limited([cycle(i) for i in range(cycles)], 50)
        async with asyncio.timeout(60):
            await hub.wait_idle()
        assert hub.stats == {"sessions": 0, "users": 0, "channels": 0, "subscriptions": 0}
        assert hub.broker.stats["subscribed_channels"] == 0  # type: ignore[attr-defined]
        assert hub.broker.stats["presence_entries"] == 0  # type: ignore[attr-defined]
        assert await hub.presence("chat:room") == {}
        leftover = [t for t in asyncio.all_tasks() if t not in baseline_tasks]
        assert leftover == []
