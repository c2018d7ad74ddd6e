"""The floor under every row of ``delivery.py``: what one small WebSocket frame written to one
TCP connection costs this machine, with no server around it.

A writer pinned to one core (``--server-cpu``) holds N loopback connections whose other ends a
sink process, pinned to the other core (``--client-cpu``), reads and discards. The writer
writes the same pre-built frame (``--frame-bytes``, an unmasked text frame as a server sends
it) to each of the N connections, ``--rounds`` times, two ways:

* ``socket.send``: a plain loop over non-blocking sockets, the least a Python server can do;
* ``uvloop transport.write``: the call our ``RealtimeWebSocketProtocol.write_now`` makes.

It prints the writer's user and kernel CPU per write (``getrusage``). On loopback the kernel's
part includes the receiving side of TCP, which Linux runs in the sender's context: that is the
cost no server in ``delivery.py`` avoids when each message goes out in a frame of its own.

    python bench/send_floor.py              # seconds; --help for the knobs
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import selectors
import shlex
import socket
import sys
from collections.abc import Callable, Sequence

import uvloop


def sink(port: int, n: int, cpu: int) -> None:
    """Child process: connect ``n`` sockets to ``port``, read and discard until all close."""
    os.sched_setaffinity(0, {cpu})
    selector = selectors.DefaultSelector()
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, sock)
    open_sockets = n
    while open_sockets:
        for key, _ in selector.select(timeout=30):
            sock = key.data
            if not sock.recv(65536):
                selector.unregister(sock)
                sock.close()
                open_sockets -= 1
    os._exit(0)


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def measure(write_all: Callable[[], None], rounds: int, writes_per_round: int) -> tuple[float, float]:
    """User and kernel µs per write over ``rounds`` calls of ``write_all``."""
    user0, sys0 = cpu()
    for _ in range(rounds):
        write_all()
    user1, sys1 = cpu()
    writes = rounds * writes_per_round
    return 1e6 * (user1 - user0) / writes, 1e6 * (sys1 - sys0) / writes


async def measure_transports(socks: list[socket.socket], frame: bytes, rounds: int) -> tuple[float, float]:
    """:func:`measure` for uvloop transports over ``socks``."""
    loop = asyncio.get_running_loop()
    transports = [(await loop.connect_accepted_socket(asyncio.Protocol, sock))[0] for sock in socks]
    writes = [transport.write for transport in transports]

    def write_all() -> None:
        for write in writes:
            write(frame)

    result = measure(write_all, rounds, len(writes))
    for transport in transports:
        transport.close()
    await asyncio.sleep(0)  # let the transports close their sockets
    return result


def main(opts: argparse.Namespace) -> None:
    if opts.frame_bytes >= 126:
        raise SystemExit("--frame-bytes must be below 126")
    frame = bytes([0x81, opts.frame_bytes]) + b"x" * opts.frame_bytes
    os.sched_setaffinity(0, {opts.server_cpu})
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    listener = socket.create_server(("127.0.0.1", 0), backlog=opts.connections)
    port = listener.getsockname()[1]
    child = os.fork()
    if child == 0:
        listener.close()
        sink(port, opts.connections, opts.client_cpu)
    try:
        socks = [listener.accept()[0] for _ in range(opts.connections)]
        for sock in socks:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sends = [sock.send for sock in socks]

        def send_all() -> None:
            for send in sends:
                send(frame)

        raw = measure(send_all, opts.rounds, len(sends))
        uv = uvloop.run(measure_transports(socks, frame, opts.rounds))
    finally:
        listener.close()
        os.waitpid(child, 0)

    print(f"{opts.connections} loopback connections, a {len(frame)}-byte frame to each, {opts.rounds} rounds")
    print(f"{'write':<26}{'user us':>9}{'kernel us':>11}{'total us':>10}")
    for name, (user, kernel) in (("socket.send", raw), ("uvloop transport.write", uv)):
        print(f"{name:<26}{user:>9.2f}{kernel:>11.2f}{user + kernel:>10.2f}")
    print("reproduce:", shlex.join([sys.executable, *sys.argv]))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100, help="frames per connection (kept below its buffers)")
    parser.add_argument("--frame-bytes", type=int, default=84, help="payload bytes of the frame (below 126)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
