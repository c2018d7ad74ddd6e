"""Test your app's real-time side with the tools FastAPI users already have.

- :class:`ProtocolTestClient`: a Centrifuge-protocol client over Starlette's ``TestClient``
  WebSocket, in-process (connect, subscribe, publish, presence, history, rpc, and
  :meth:`~ProtocolTestClient.next_push` / :meth:`~ProtocolTestClient.next_publication`, which
  wait at most ``timeout`` seconds and then raise :class:`NoMessage`; they never hang).
- :class:`HubTester`: a started hub behind a ``TestClient``, with ``connect()`` and a sync
  ``publish()`` for plain (non-async) tests.
- :func:`make_token` and :func:`make_subscription_token`: JWTs for :class:`~.auth.JWTAuth`.
- pytest fixtures: enable them with ``pytest_plugins = ["fastapi_realtime.testing"]`` in your
  ``conftest.py`` and override ``realtime_hub`` and ``realtime_app`` to test your own app::

      @pytest.fixture
      def realtime_hub() -> Hub:
          return my_app.hub

      @pytest.fixture
      def realtime_app() -> FastAPI:
          return my_app.app

      def test_lobby(realtime: HubTester) -> None:
          with realtime.connect(token=make_token(SECRET, user="ada")) as ada:
              ada.subscribe("chat:lobby")
              realtime.publish("chat:lobby", {"text": "hi"})
              assert ada.next_publication("chat:lobby")["data"] == {"text": "hi"}

Needs ``pytest`` and ``httpx`` (which Starlette's ``TestClient`` uses), as FastAPI's own testing does.

Why a reader thread: ``TestClient``'s WebSocket ``receive()`` blocks with no timeout. Each
:class:`ProtocolTestClient` has one daemon thread that receives every message the server
sends and puts it in a queue; waits read that queue with a timeout. Under ``TestClient`` the
server may join replies and pushes into one frame (newline-delimited, as the protocol
allows); the client splits frames, answers pings, and hands out one message at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import jwt
import orjson
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from .app import JSON_SUBPROTOCOL, Hub
from .protocol.errors import ReplyError
from .protocol.messages import StreamPosition, to_raw
from .session import Session
from .settings import ChannelOptions, HubSettings

DEFAULT_TIMEOUT = 5.0
"""Seconds a :class:`ProtocolTestClient` waits for a reply or a push before :class:`NoMessage`."""
DEFAULT_PATH = "/connection/websocket"

P = ParamSpec("P")
T = TypeVar("T")


class NoMessage(AssertionError, TimeoutError):
    """Nothing (or nothing that matched) arrived in time. An ``AssertionError``, so pytest
    reports it as a failed expectation, and a ``TimeoutError``."""


class ConnectionClosed(AssertionError):
    """The server closed the connection while a message was awaited; ``code`` and ``reason``
    are its close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"the server closed the connection: {code} {reason!r}")


_CLOSED = object()


class ProtocolTestClient:
    """A Centrifuge JSON-protocol client over a ``TestClient`` WebSocket session.

    Get one with :meth:`HubTester.connect` or :meth:`open`. Command methods send a command,
    wait for its reply (pushes that arrive meanwhile are kept for :meth:`next_push`), return
    the reply's result and raise :class:`~.protocol.errors.ReplyError` for an error reply.
    Server pings are answered on the way.
    """

    def __init__(self, websocket: WebSocketTestSession, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.websocket = websocket
        self.timeout = timeout
        self.connect_result: dict[str, Any] = {}
        """The result of the last ``connect`` (``client``, ``version``, ``subs``...)."""
        self.close_code: int | None = None
        self.close_reason = ""
        self._closing = False
        self._incoming: queue.Queue[Any] = queue.Queue()
        self._replies: dict[int, dict[str, Any]] = {}
        self._pushes: deque[dict[str, Any]] = deque()
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read, name="protocol-test-client", daemon=True)
        self._reader.start()

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        test_client: TestClient,
        path: str = DEFAULT_PATH,
        *,
        token: str = "",
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        connect: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Iterator[ProtocolTestClient]:
        """Open a WebSocket to ``path`` (with HTTP ``headers``, e.g. a cookie) and, unless
        ``connect=False``, send ``connect`` with ``token`` and ``data``."""
        with test_client.websocket_connect(
            path, subprotocols=[JSON_SUBPROTOCOL], headers=dict(headers or {})
        ) as websocket:
            client = cls(websocket, timeout=timeout)
            try:
                if connect:
                    client.connect(token=token, data=data)
                yield client
            finally:
                client.close()
        client._reader.join(timeout)

    # -- the reader thread ------------------------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                message = self.websocket.receive()
            except Exception:  # the session ended (its portal stopped): no more messages
                self._incoming.put(_CLOSED)
                return
            if message["type"] == "websocket.close":
                self._incoming.put((message.get("code", 1000), message.get("reason") or ""))
                self._incoming.put(_CLOSED)
                return
            if message["type"] == "websocket.send":
                frame = message.get("text")
                if frame is None:
                    frame = bytes(message.get("bytes") or b"").decode()
                self._incoming.put(frame)

    def _pump(self, deadline: float) -> None:
        """Take the next frame from the reader; raise :class:`NoMessage` at ``deadline``."""
        if self.close_code is not None:
            raise ConnectionClosed(self.close_code, self.close_reason)
        try:
            item = self._incoming.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise NoMessage("no message from the server in time") from None
        if item is _CLOSED:
            self._incoming.put(_CLOSED)  # stays closed for every later wait
            if self.close_code is None:
                self.close_code, self.close_reason = 1006, "session ended"
            raise ConnectionClosed(self.close_code, self.close_reason)
        if isinstance(item, tuple):
            self.close_code, self.close_reason = item
            return
        for line in item.split("\n"):
            if not line:
                continue
            msg = orjson.loads(line)
            if msg == {}:  # a server ping
                self._send_raw("{}")
            elif msg.get("id"):
                self._replies[msg["id"]] = msg
            elif "push" in msg:
                self._pushes.append(msg["push"])

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    # -- commands ---------------------------------------------------------------------

    def _send_raw(self, frame: str) -> None:
        with contextlib.suppress(Exception):  # the session may have ended under us
            self.websocket.send_text(frame)

    def command(self, method: str, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Send one command; return its reply's result, or raise ``ReplyError`` for an error."""
        cmd_id = next(self._ids)
        self.websocket.send_text(orjson.dumps({"id": cmd_id, method: body}).decode())
        deadline = self._deadline(timeout)
        while cmd_id not in self._replies:
            try:
                self._pump(deadline)
            except NoMessage:
                raise NoMessage(f"no reply to {method} (id {cmd_id}) in time") from None
        reply = self._replies.pop(cmd_id)
        if "error" in reply:
            error = reply["error"]
            raise ReplyError(error["code"], error.get("message"), temporary=error.get("temporary", False))
        return reply.get(method, {})

    def connect(self, *, token: str = "", data: Any = None, name: str = "") -> dict[str, Any]:
        """Send ``connect``; return its result (``client``, ``version``, ``subs``...)."""
        body: dict[str, Any] = {}
        if token:
            body["token"] = token
        if data is not None:
            body["data"] = orjson.Fragment(to_raw(data))
        if name:
            body["name"] = name
        self.connect_result = self.command("connect", body)
        return self.connect_result

    def subscribe(
        self,
        channel: str,
        *,
        token: str = "",
        data: Any = None,
        join_leave: bool = False,
        positioned: bool = False,
        recoverable: bool = False,
        since: StreamPosition | None = None,
    ) -> dict[str, Any]:
        """Subscribe to ``channel``; ``since`` asks to recover what came after that position."""
        body: dict[str, Any] = {"channel": channel}
        if token:
            body["token"] = token
        if data is not None:
            body["data"] = orjson.Fragment(to_raw(data))
        for key, flag in (("join_leave", join_leave), ("positioned", positioned), ("recoverable", recoverable)):
            if flag:
                body[key] = True
        if since is not None:
            body.update(recover=True, offset=since.offset, epoch=since.epoch)
        result: dict[str, Any] = self.command("subscribe", body)
        return result

    def unsubscribe(self, channel: str) -> None:
        self.command("unsubscribe", {"channel": channel})

    def publish(self, channel: str, data: Any) -> None:
        """Publish ``data`` (anything :meth:`Hub.publish` takes) to ``channel``."""
        self.command("publish", {"channel": channel, "data": orjson.Fragment(to_raw(data))})

    def presence(self, channel: str) -> dict[str, Any]:
        """Client id -> ``{"user", "client", "conn_info", "chan_info"}``."""
        result: dict[str, Any] = self.command("presence", {"channel": channel}).get("presence", {})
        return result

    def presence_stats(self, channel: str) -> dict[str, int]:
        result: dict[str, int] = self.command("presence_stats", {"channel": channel})
        return result

    def history(
        self, channel: str, *, limit: int = -1, since: StreamPosition | None = None, reverse: bool = False
    ) -> dict[str, Any]:
        """``{"publications": [...], "offset": ..., "epoch": ...}``; ``limit=-1``: all kept."""
        body: dict[str, Any] = {"channel": channel, "limit": limit, "reverse": reverse}
        if since is not None:
            body["since"] = {"offset": since.offset, "epoch": since.epoch}
        result: dict[str, Any] = self.command("history", body)
        return result

    def rpc(self, method: str, data: Any = None) -> Any:
        """Call the ``@hub.rpc(method)`` handler; return the data it returned."""
        body: dict[str, Any] = {"method": method}
        if data is not None:
            body["data"] = orjson.Fragment(to_raw(data))
        return self.command("rpc", body).get("data")

    def send(self, data: Any) -> None:
        """A fire-and-forget message to ``@hub.on_message`` (no reply)."""
        self.websocket.send_text(orjson.dumps({"send": {"data": orjson.Fragment(to_raw(data))}}).decode())

    # -- pushes -----------------------------------------------------------------------

    def next_push(self, timeout: float | None = None) -> dict[str, Any]:
        """The next push (``{"channel": ..., "pub": {...}}``, ``join``, ``leave``,
        ``unsubscribe``, ``message``, ``disconnect``...), waiting at most ``timeout`` seconds
        (default: the client's ``timeout``). Raises :class:`NoMessage` when none came."""
        deadline = self._deadline(timeout)
        while not self._pushes:
            self._pump(deadline)
        return self._pushes.popleft()

    def next_publication(self, channel: str, timeout: float | None = None) -> dict[str, Any]:
        """The next publication in ``channel`` (``{"data": ..., "offset": ..., "info": ...}``),
        waiting at most ``timeout`` seconds. Other pushes stay queued for :meth:`next_push`."""
        deadline = self._deadline(timeout)
        seen = 0
        while True:
            for index in range(seen, len(self._pushes)):
                push = self._pushes[index]
                if push.get("channel") == channel and "pub" in push:
                    del self._pushes[index]
                    pub: dict[str, Any] = push["pub"]
                    return pub
            seen = len(self._pushes)
            try:
                self._pump(deadline)
            except NoMessage:
                raise NoMessage(f"no publication in {channel!r} in time") from None

    def wait_closed(self, timeout: float | None = None) -> tuple[int, str]:
        """Wait until the server closes the connection; return its close code and reason."""
        deadline = self._deadline(timeout)
        with contextlib.suppress(ConnectionClosed):
            while True:
                self._pump(deadline)
        assert self.close_code is not None
        return self.close_code, self.close_reason

    def close(self, code: int = 1000) -> None:
        """Close the WebSocket from the client side (once; later calls do nothing)."""
        if self._closing:
            return
        self._closing = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            self.websocket.close(code)


class HubTester:
    """A started hub behind an entered ``TestClient``: connect protocol clients, and run the
    hub's coroutines (``publish``, ``history``...) from a plain test on the app's event loop."""

    def __init__(self, test_client: TestClient, hub: Hub, *, path: str = DEFAULT_PATH) -> None:
        self.test_client = test_client
        self.hub = hub
        self.path = path
        self._departures = _departures_of(hub)

    @contextlib.contextmanager
    def connect(
        self,
        *,
        token: str = "",
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        path: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Iterator[ProtocolTestClient]:
        """A connected :class:`ProtocolTestClient`, for a ``with`` block (see :meth:`ProtocolTestClient.open`).

        On exit the client closes its connection and waits (at most ``timeout`` seconds) until
        the hub has let it go: presence, subscriber counts and ``on_session_closed`` hooks
        have caught up when the block ends.
        """
        with ProtocolTestClient.open(
            self.test_client, path or self.path, headers=headers, connect=False, timeout=timeout
        ) as client:
            try:
                client.connect(token=token, data=data)
                yield client
            finally:
                client_id = client.connect_result.get("client")
                if client.close_code is None or client_id is not None:
                    departure = self.call(self._departures.expect, client_id)
                    client.close()
                    if not self.call(departure.wait, timeout):
                        raise NoMessage("the hub did not let the connection go in time")

    def call(self, func: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await func(*args, **kwargs)`` on the app's event loop and return its result."""
        portal = self.test_client.portal
        assert portal is not None, "the TestClient is not entered: use `with TestClient(app)`"

        async def run() -> T:
            return await func(*args, **kwargs)

        return portal.call(run)

    def publish(self, channel: str, data: Any) -> StreamPosition:
        """``hub.publish(channel, data)`` from a plain test."""
        return self.call(self.hub.publish, channel, data)


class _Departure:
    def __init__(self, client: str | None) -> None:
        self.client = client
        self.done = asyncio.Event()

    async def wait(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.done.wait()
        return self.done.is_set()


class _Departures:
    """Tells waiting testers when the hub has let a session go (``Hub.on_session_closed``).
    A departure of an unknown client (one that never connected) is met by the next session
    that closes."""

    def __init__(self) -> None:
        self.waiting: list[_Departure] = []
        self.recent: deque[str] = deque(maxlen=1000)

    async def expect(self, client: str | None) -> _Departure:
        departure = _Departure(client)
        if client is not None and client in self.recent:
            departure.done.set()
        else:
            self.waiting.append(departure)
        return departure

    async def session_closed(self, session: Session) -> None:
        self.recent.append(session.id)
        for departure in list(self.waiting):
            if departure.client in (None, session.id):
                departure.done.set()
                self.waiting.remove(departure)
                return


_DEPARTURES: weakref.WeakKeyDictionary[Hub, _Departures] = weakref.WeakKeyDictionary()


def _departures_of(hub: Hub) -> _Departures:
    departures = _DEPARTURES.get(hub)
    if departures is None:
        departures = _DEPARTURES[hub] = _Departures()
        hub.on_session_closed.append(departures.session_closed)
    return departures


def make_token(
    secret: str,
    *,
    user: str = "",
    channels: Sequence[str] | None = None,
    ttl: float | None = 3600.0,
    info: Any = None,
    meta: Any = None,
    algorithm: str = "HS256",
) -> str:
    """A connection token for ``JWTAuth(secret=secret)``: ``user`` as ``sub``, ``channels``
    for server-side subscriptions, expiring ``ttl`` seconds from now (``None``: never)."""
    claims: dict[str, Any] = {"sub": user}
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)
    if channels:
        claims["channels"] = list(channels)
    if info is not None:
        claims["info"] = info
    if meta is not None:
        claims["meta"] = meta
    return jwt.encode(claims, secret, algorithm=algorithm)


def make_subscription_token(
    secret: str, *, user: str, channel: str, ttl: float | None = 3600.0, info: Any = None, algorithm: str = "HS256"
) -> str:
    """A subscription token for a ``$private`` ``channel``, for connections of ``user``."""
    claims: dict[str, Any] = {"sub": user, "channel": channel}
    if ttl is not None:
        claims["exp"] = int(time.time() + ttl)
    if info is not None:
        claims["info"] = info
    return jwt.encode(claims, secret, algorithm=algorithm)


# -- pytest fixtures ------------------------------------------------------------------


@pytest.fixture
def realtime_hub() -> Hub:
    """The hub under test. Override it to return your app's hub; by default a fresh hub with
    anonymous connections allowed and an open ``chat`` namespace (history, presence,
    join/leave, client publishing)."""
    return Hub(
        HubSettings(
            allow_anonymous=True,
            namespaces={
                "": ChannelOptions(),
                "chat": ChannelOptions(history_size=100, presence=True, join_leave=True, allow_publish=True),
            },
        )
    )


@pytest.fixture
def realtime_app(realtime_hub: Hub) -> FastAPI:
    """The app under test. Override it to return your app; by default an app that only mounts
    ``realtime_hub`` (``lifespan=hub.lifespan``, the protocol endpoint at its default path)."""
    app = FastAPI(lifespan=realtime_hub.lifespan)
    app.include_router(realtime_hub.router())
    return app


@pytest.fixture
def realtime(realtime_app: FastAPI, realtime_hub: Hub) -> Iterator[HubTester]:
    """A :class:`HubTester`: ``realtime_app`` in an entered ``TestClient``, so the hub is started."""
    with TestClient(realtime_app) as test_client:
        yield HubTester(test_client, realtime_hub)
