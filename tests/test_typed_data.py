"""Typed data: pydantic models and dataclasses in and out of the hub.

- ``hub.publish``, ``hub.broadcast`` and ``conn.send_json`` take pydantic models and
  dataclasses (and ``bytes`` as JSON text);
- ``hub.history`` returns decoded data, ready to be returned by a route;
- ``ChannelOptions(publish_model=...)`` and ``@hub.rpc(..., model=...)`` validate what clients
  send, error 107 with the validation message, checked with the official Python SDK.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from centrifuge import ClientState
from centrifuge import ReplyError as SDKReplyError
from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, Field
from starlette.testclient import TestClient
from test_sdk_python import connected, hs256, make_hub, serve, subscribed

from fastapi_realtime import ChannelOptions, Hub, HubSettings, PublishContext, ReplyError, RPCContext
from fastapi_realtime.protocol import to_raw
from fastapi_realtime.testing import HubTester


class Order(BaseModel):
    id: int
    status: str
    at: dt.datetime


@dataclass
class Point:
    x: int
    y: int


class Message(BaseModel):
    text: str = Field(min_length=1, max_length=50)


class AddArgs(BaseModel):
    a: int
    b: int


AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_to_raw_takes_models_dataclasses_nested_values_and_json_bytes() -> None:
    assert to_raw(Order(id=1, status="shipped", at=AT)) == b'{"id":1,"status":"shipped","at":"2026-01-02T03:04:05Z"}'
    assert to_raw(Point(1, 2)) == b'{"x":1,"y":2}'
    assert to_raw({"points": [Point(0, 1)], "order": Order(id=2, status="new", at=AT)}) == (
        b'{"points":[{"x":0,"y":1}],"order":{"id":2,"status":"new","at":"2026-01-02T03:04:05Z"}}'
    )
    assert to_raw(b'{"already": "json"}') == b'{"already": "json"}'
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        to_raw(object())
    with pytest.raises(TypeError):
        to_raw(Order)  # a model class, not an instance


def typed_app() -> tuple[FastAPI, Hub]:
    hub = Hub(
        HubSettings(allow_anonymous=True, namespaces={"": ChannelOptions(), "orders": ChannelOptions(history_size=10)})
    )
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            await conn.send_json(Order(id=7, status="new", at=AT))
            await conn.send_json(Point(3, 4))
            await conn.send_json(b'{"raw":true}')

    @app.post("/orders/{order_id}/ship")
    async def ship(order_id: int) -> dict[str, int]:
        position = await hub.publish(f"orders:{order_id}", Order(id=order_id, status="shipped", at=AT))
        return {"offset": position.offset}

    @app.get("/orders/{order_id}/history")
    async def history(order_id: int) -> Any:
        return await hub.history(f"orders:{order_id}")

    return app, hub


def test_publish_takes_a_model_and_history_returns_decoded_data_a_route_can_return() -> None:
    app, hub = typed_app()
    with TestClient(app) as client:
        tester = HubTester(client, hub)
        with tester.connect() as ada:
            ada.subscribe("orders:1")
            assert client.post("/orders/1/ship").json() == {"offset": 1}
            assert ada.next_publication("orders:1")["data"] == {
                "id": 1,
                "status": "shipped",
                "at": "2026-01-02T03:04:05Z",
            }
            tester.publish("orders:1", Point(1, 2))
            assert ada.next_publication("orders:1")["data"] == {"x": 1, "y": 2}
        body = client.get("/orders/1/history").json()
        assert [p["data"] for p in body["publications"]] == [
            {"id": 1, "status": "shipped", "at": "2026-01-02T03:04:05Z"},
            {"x": 1, "y": 2},
        ]
        assert body["publications"][0] == {
            "data": {"id": 1, "status": "shipped", "at": "2026-01-02T03:04:05Z"},
            "offset": 1, "time": body["publications"][0]["time"], "tags": None, "user": "", "client": "", "info": None,
        }  # fmt: skip
        assert body["position"] == {"offset": 2, "epoch": body["position"]["epoch"]}


def test_send_json_takes_models_dataclasses_and_json_bytes() -> None:
    app, _ = typed_app()
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"id": 7, "status": "new", "at": "2026-01-02T03:04:05Z"}
        assert ws.receive_json() == {"x": 3, "y": 4}
        assert ws.receive_json() == {"raw": True}


async def test_broadcast_takes_a_dataclass(hub: Hub) -> None:
    await hub.broadcast(Point(5, 6))  # encodes (no TypeError) with no connection to send it to


# -- validation of client data, with the official SDK ---------------------------------------


async def test_publish_model_refuses_invalid_publications_with_107_and_publishes_valid_ones() -> None:
    hub = make_hub(namespaces={"chat": ChannelOptions(history_size=10, allow_publish=True, publish_model=Message)})
    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        sub, events = await subscribed(client, "chat:room")
        with pytest.raises(SDKReplyError) as refused:
            await sub.publish({"text": ""})
        assert refused.value.code == 107
        assert refused.value.message == "text: String should have at least 1 character"
        with pytest.raises(SDKReplyError) as wrong_type:
            await sub.publish({"nope": 1})
        assert (wrong_type.value.code, wrong_type.value.message) == (107, "text: Field required")
        assert client.state == ClientState.CONNECTED
        await sub.publish({"text": "hi", "extra": "dropped by the model"})
        assert (await events.next("publication")).pub.data == {"text": "hi"}


async def test_on_publish_sees_the_validated_model() -> None:
    hub = make_hub(namespaces={"chat": ChannelOptions(allow_publish=True, publish_model=Message)})
    seen: list[Any] = []

    @hub.on_publish
    async def shout(ctx: PublishContext) -> Any:
        seen.append(ctx.data)
        return Message(text=ctx.data.text.upper())

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        sub, events = await subscribed(client, "chat:room")
        await sub.publish({"text": "hi"})
        assert (await events.next("publication")).pub.data == {"text": "HI"}
        assert seen == [Message(text="hi")]


async def test_rpc_model_validates_the_call_data_with_107() -> None:
    hub = make_hub()

    @hub.rpc("add", model=AddArgs)
    async def add(ctx: RPCContext, data: AddArgs) -> Any:
        return {"sum": data.a + data.b}

    async with serve(hub) as url, contextlib.AsyncExitStack() as stack:
        client, _ = await connected(url, stack, token=hs256("alice"))
        assert (await client.rpc("add", {"a": 2, "b": "40"})).data == {"sum": 42}
        with pytest.raises(SDKReplyError) as refused:
            await client.rpc("add", {"a": 2, "b": "forty"})
        assert refused.value.code == 107
        assert refused.value.message == "b: Input should be a valid integer, unable to parse string as an integer"
        with pytest.raises(SDKReplyError) as not_an_object:
            await client.rpc("add", [1, 2])
        assert not_an_object.value.code == 107


def test_permission_comes_before_validation() -> None:
    hub = Hub(
        HubSettings(allow_anonymous=True, namespaces={"ro": ChannelOptions(publish_model=Message)})
    )  # allow_publish is False
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    with TestClient(app) as client, HubTester(client, hub).connect() as ada:
        with pytest.raises(ReplyError) as refused:
            ada.publish("ro:x", {"text": ""})
        assert refused.value.code == 103  # not 107: a client without the right learns nothing of the model
