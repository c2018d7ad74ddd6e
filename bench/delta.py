"""Delta compression benchmark: the bytes a subscriber receives on a JSON state channel whose
payload changes a little each time, with and without ``delta: "fossil"``.

A hub with a namespace that allows fossil deltas runs on uvicorn on 127.0.0.1 (a free port, in
this process). Two raw Centrifuge clients subscribe to one channel: one asks for delta
compression, one does not, each over JSON and over Protobuf. The hub publishes ``--count``
states of a dashboard (``--items`` rows, ~80 bytes each); each step changes ``--changes`` rows.
It reports the bytes of the publication pushes each client received (frames as sent, without
WebSocket framing), the saving, and the CPU time the server spent per delta (the pure-Python
encoder in ``fastapi_realtime.protocol.fossil``; each delta is made once per publication, not
per subscriber).

    .venv/bin/python bench/delta.py [--count 200] [--items 100] [--changes 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import itertools
import random
import socket
import time
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI
from google.protobuf import proto
from websockets.asyncio.client import ClientConnection, connect

from fastapi_realtime import ChannelOptions, Hub, HubSettings
from fastapi_realtime.protocol.fossil import create_delta
from fastapi_realtime.protocol.proto import client_pb2 as pb

CHANNEL = "state:dashboard"


def state(rows: list[dict[str, Any]], step: int) -> dict[str, Any]:
    return {"step": step, "rows": rows}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pb_frame(**command: Any) -> bytes:
    out = io.BytesIO()
    proto.serialize_length_prefixed(pb.Command(**command), out)
    return out.getvalue()


async def json_client(url: str, delta: bool) -> ClientConnection:
    ws = await connect(url, subprotocols=["centrifuge-json"])  # type: ignore[list-item]
    sub: dict[str, Any] = {"channel": CHANNEL}
    if delta:
        sub["delta"] = "fossil"
    commands = [{"id": 1, "connect": {}}, {"id": 2, "subscribe": sub}]
    await ws.send("\n".join(orjson.dumps(c).decode() for c in commands))
    replies = 0
    while replies < 2:
        replies += len((await ws.recv()).split("\n"))
    return ws


async def protobuf_client(url: str, delta: bool) -> ClientConnection:
    ws = await connect(url, subprotocols=["centrifuge-protobuf"])  # type: ignore[list-item]
    sub = pb.SubscribeRequest(channel=CHANNEL, delta="fossil" if delta else "")
    await ws.send(pb_frame(id=1, connect=pb.ConnectRequest()) + pb_frame(id=2, subscribe=sub))
    await ws.recv()
    return ws


async def count_bytes(ws: ClientConnection, publications: int, totals: dict[str, int], name: str) -> None:
    """Receive until ``publications`` pushes came; add up their frame bytes."""
    seen = 0
    while seen < publications:
        frame = await ws.recv()
        data = frame.encode() if isinstance(frame, str) else frame
        if isinstance(frame, str):
            seen += sum(1 for line in frame.split("\n") if '"pub"' in line)
        else:
            stream = io.BytesIO(frame)
            while (reply := proto.parse_length_prefixed(pb.Reply, stream)) is not None:
                seen += reply.push.HasField("pub")
        totals[name] = totals.get(name, 0) + len(data)


async def run(count: int, items: int, changes: int) -> None:
    settings = HubSettings(
        namespaces={"state": ChannelOptions(history_size=10, allowed_delta_types=("fossil",))},
        allow_anonymous=True,
    )
    hub = Hub(settings)
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    url = f"ws://127.0.0.1:{port}/connection/websocket"
    try:
        clients = {
            "json full": await json_client(url, False),
            "json delta": await json_client(url, True),
            "protobuf full": await protobuf_client(url, False),
            "protobuf delta": await protobuf_client(url, True),
        }
        totals: dict[str, int] = {}
        rnd = random.Random(1)
        rows = [{"id": i, "name": f"sensor {i:03d}", "value": rnd.randint(0, 10_000), "ok": True} for i in range(items)]
        payloads = []
        for step in range(count):
            for _ in range(changes):
                rows[rnd.randrange(items)]["value"] = rnd.randint(0, 10_000)
            payloads.append(orjson.dumps(state(rows, step)))
        readers = [asyncio.create_task(count_bytes(ws, count, totals, name)) for name, ws in clients.items()]
        for payload in payloads:
            await hub.publish(CHANNEL, payload)
        async with asyncio.timeout(60):
            await asyncio.gather(*readers)
        for ws in clients.values():
            await ws.close()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving

    started = time.process_time()
    for before, after in itertools.pairwise(payloads):
        create_delta(before, after)
    per_delta = (time.process_time() - started) / max(1, count - 1)

    size = sum(len(p) for p in payloads) / count
    print(f"{count} publications of a {size:.0f}-byte JSON state ({items} rows, {changes} changed per step)")
    for encoding in ("json", "protobuf"):
        full, delta = totals[f"{encoding} full"], totals[f"{encoding} delta"]
        print(
            f"  {encoding:8s} full: {full:>10,d} B  delta: {delta:>9,d} B  "
            f"saved {100 * (1 - delta / full):5.1f}%  ({full / count:,.0f} -> {delta / count:,.0f} B per publication)"
        )
    print(f"  server CPU per delta (pure-Python fossil encoder): {per_delta * 1e6:,.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="publications (default 200)")
    parser.add_argument("--items", type=int, default=100, help="rows in the state (default 100)")
    parser.add_argument("--changes", type=int, default=1, help="rows changed per publication (default 1)")
    args = parser.parse_args()
    asyncio.run(run(args.count, args.items, args.changes))


if __name__ == "__main__":
    main()
