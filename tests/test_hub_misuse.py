"""Mistakes in server code fail loudly, with a message that names the fix.

- an app that never starts its hub (no ``lifespan=hub.lifespan``, or ``TestClient(app)``
  without ``with``) closes connections with 3004 and logs one ERROR saying so;
- ``hub.publish`` (and the rest of the server API) before start or after close raises
  :class:`HubNotRunning`;
- ``hub.history`` / ``hub.presence`` on a namespace without the feature raise
  :class:`FeatureNotEnabled` saying what to configure (clients asking get error 108).
"""

from __future__ import annotations

import asyncio
import logging
import signal

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from fastapi_realtime import FeatureNotEnabled, Hub, HubNotRunning, HubSettings, RealtimeError
from fastapi_realtime.signals import SignalChain

WAIT = 5.0


def forgetful_app(hub: Hub) -> FastAPI:
    app = FastAPI()  # no lifespan=hub.lifespan
    app.include_router(hub.router())

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            async for text in conn.iter_text():
                await conn.send_text(text)

    return app


def test_a_hub_that_was_never_started_refuses_connections_with_3004_and_one_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(HubSettings(allow_anonymous=True))
    client = TestClient(forgetful_app(hub))  # without `with`: the lifespan does not run
    for path in ["/echo", "/connection/websocket", "/echo"]:
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(path) as ws:
            ws.receive_text()
        assert closed.value.code == 3004
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # once per hub, not once per connection
    assert "lifespan=hub.lifespan" in errors[0].getMessage()
    assert "with TestClient(app) as client" in errors[0].getMessage()
    assert errors[0].exc_info is None


async def test_publish_before_start_and_after_close_raises_hub_not_running() -> None:
    hub = Hub()
    with pytest.raises(HubNotRunning, match=r"lifespan=hub\.lifespan"):
        await hub.publish("room", "too early")
    async with hub:
        await hub.publish("room", "fine")
    for call in (hub.publish("room", "too late"), hub.broadcast("too late"), hub.disconnect("alice")):
        with pytest.raises(HubNotRunning, match="closed"):
            await call
    assert issubclass(HubNotRunning, RealtimeError) and issubclass(HubNotRunning, RuntimeError)
    assert issubclass(FeatureNotEnabled, RealtimeError)


async def test_the_signal_chain_drains_first_then_calls_the_previous_handler_and_uninstalls() -> None:
    calls: list[str] = []
    passed_on = asyncio.Event()

    def previous(sig: int, frame: object) -> None:
        calls.append(f"previous {signal.Signals(sig).name}")
        passed_on.set()

    async def drain() -> None:
        calls.append("drain")

    saved = signal.signal(signal.SIGTERM, previous)
    try:
        chain = SignalChain(drain)
        chain.install()
        assert signal.getsignal(signal.SIGTERM) == chain._handle
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(passed_on.wait(), WAIT)
        assert calls == ["drain", "previous SIGTERM"]
        chain.uninstall()
        assert signal.getsignal(signal.SIGTERM) == previous
    finally:
        signal.signal(signal.SIGTERM, saved)


async def test_a_second_signal_during_the_drain_goes_on_at_once_and_only_once() -> None:
    calls: list[str] = []
    passed_on = asyncio.Event()
    release = asyncio.Event()
    draining = asyncio.Event()

    def previous(sig: int, frame: object) -> None:
        calls.append("previous")
        passed_on.set()

    async def drain() -> None:
        calls.append("drain")
        draining.set()
        await release.wait()

    saved = signal.signal(signal.SIGTERM, previous)
    chain = SignalChain(drain)
    try:
        chain.install()
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(draining.wait(), WAIT)
        signal.raise_signal(signal.SIGTERM)  # impatient: straight to the server's handler
        await asyncio.wait_for(passed_on.wait(), WAIT)
        assert calls == ["drain", "previous"]
        release.set()
        assert chain._draining is not None
        await asyncio.wait_for(chain._draining, WAIT)
        assert calls == ["drain", "previous"]  # not passed on a second time
    finally:
        chain.uninstall()
        signal.signal(signal.SIGTERM, saved)


async def test_the_signal_chain_leaves_the_interpreter_defaults_alone() -> None:
    chain = SignalChain(asyncio.sleep)  # type: ignore[arg-type]
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        chain.install()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
    finally:
        chain.uninstall()
        for sig, handler in saved.items():
            signal.signal(sig, handler)
