"""The standalone server counts frames per transport without losing the direct write of our
uvicorn WebSocket protocol (a wrapper that hid ``write_now`` would put every delivery back on
the queued path)."""

from __future__ import annotations

from fakes import FakeDirectTransport, FakeTransport

from fastapi_realtime.server.metrics import Metrics, counting


async def test_counting_keeps_the_direct_write_and_counts_what_it_takes() -> None:
    metrics = Metrics(lambda: {"sessions": 0, "users": 0, "channels": 0, "subscriptions": 0}, lambda: True)
    inner = FakeDirectTransport()
    counted = counting(inner, metrics.frames("websocket"))
    assert counted.write_now("a") is True  # type: ignore[attr-defined]
    inner.block()
    assert counted.write_now("b") is False  # type: ignore[attr-defined]  # not taken: not counted
    inner.unblock()
    await counted.send("c")
    inner.feed("in")
    assert await counted.receive() == "in"
    assert inner.sent == ["a", "c"]
    text = metrics.exposition().decode()
    assert 'fastapi_realtime_frames_sent_total{transport="websocket"} 2.0' in text
    assert 'fastapi_realtime_frames_received_total{transport="websocket"} 1.0' in text


def test_a_transport_without_a_direct_write_gets_none() -> None:
    metrics = Metrics(lambda: {"sessions": 0, "users": 0, "channels": 0, "subscriptions": 0}, lambda: True)
    assert not hasattr(counting(FakeTransport(), metrics.frames("tutorial")), "write_now")
