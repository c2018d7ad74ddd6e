"""``fastapi_realtime.testing``: the protocol client over Starlette's ``TestClient``, its
fixtures (imported explicitly here; the README's Testing section enables them with
``pytest_plugins``, see ``tests/test_readme.py``) and the token helpers.

These tests are plain sync tests, like an app's own tests with ``TestClient``.
"""

from __future__ import annotations

import threading
import time

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from fastapi_realtime import ChannelOptions, Hub, HubSettings, JWTAuth, ReplyError
from fastapi_realtime.testing import (
    ConnectionClosed,
    HubTester,
    NoMessage,
    ProtocolTestClient,
    make_subscription_token,
    make_token,
    realtime,
    realtime_app,
    realtime_hub,
)

__all__ = ["realtime", "realtime_app", "realtime_hub"]  # the plugin's fixtures, used below

SECRET = "a-secret-of-at-least-32-bytes-long!!"


def test_connect_subscribe_and_receive_a_server_publication(realtime: HubTester) -> None:
    with realtime.connect() as ada:
        assert ada.subscribe("chat:lobby", positioned=True)["epoch"]
        position = realtime.publish("chat:lobby", {"text": "hi"})
        pub = ada.next_publication("chat:lobby")
        assert pub["data"] == {"text": "hi"} and pub["offset"] == position.offset == 1


def test_client_publish_presence_and_history(realtime: HubTester) -> None:
    with realtime.connect(data={"hello": 1}) as ada, realtime.connect() as bob:
        ada.subscribe("chat:room", join_leave=True)
        bob.subscribe("chat:room")
        assert ada.next_push()["join"]["info"]["client"]  # bob joined
        bob.publish("chat:room", {"text": "from bob"})
        assert ada.next_publication("chat:room")["data"] == {"text": "from bob"}
        assert bob.next_publication("chat:room")["data"] == {"text": "from bob"}
        assert len(ada.presence("chat:room")) == 2
        assert ada.presence_stats("chat:room") == {"num_clients": 2, "num_users": 1}
        history = ada.history("chat:room")
        assert [p["data"] for p in history["publications"]] == [{"text": "from bob"}]


def test_an_error_reply_raises_reply_error_with_its_code(realtime: HubTester) -> None:
    with realtime.connect() as ada:
        with pytest.raises(ReplyError) as unknown:
            ada.subscribe("nowhere:x")
        assert unknown.value.code == 102
        with pytest.raises(ReplyError) as refused:
            ada.publish("news", {"x": 1})  # the default namespace does not allow client publishing
        assert refused.value.code == 103


def test_rpc_returns_the_handler_data(realtime: HubTester, realtime_hub: Hub) -> None:
    @realtime_hub.rpc("double")
    async def double(ctx: object, data: dict[str, int]) -> dict[str, int]:
        return {"n": data["n"] * 2}

    with realtime.connect() as ada:
        assert ada.rpc("double", {"n": 21}) == {"n": 42}


def test_next_push_on_a_silent_connection_raises_no_message_within_bounds(realtime: HubTester) -> None:
    with realtime.connect() as ada:
        ada.subscribe("chat:quiet")
        started = time.monotonic()
        with pytest.raises(NoMessage):
            ada.next_push(timeout=0.2)
        with pytest.raises(TimeoutError, match="no publication in 'chat:quiet'"):
            ada.next_publication("chat:quiet", timeout=0.2)
        assert time.monotonic() - started < 5  # bounded, not hung (the test timeout would catch a hang)
        realtime.publish("chat:quiet", "late")  # the client still works after a timeout
        assert ada.next_publication("chat:quiet")["data"] == "late"


def test_next_publication_keeps_other_pushes_for_next_push(realtime: HubTester) -> None:
    with realtime.connect() as ada:
        ada.subscribe("chat:a")
        ada.subscribe("chat:b")
        realtime.publish("chat:a", 1)
        realtime.publish("chat:b", 2)
        assert ada.next_publication("chat:b")["data"] == 2
        push = ada.next_push()
        assert push["channel"] == "chat:a" and push["pub"]["data"] == 1


def test_replies_and_pushes_in_one_frame_are_split(realtime: HubTester) -> None:
    with realtime.connect() as ada:
        ada.subscribe("chat:burst")

        async def burst() -> None:  # no await between them: the pushes share one frame
            for i in range(20):
                await realtime.hub.publish("chat:burst", i)

        realtime.call(burst)
        assert [ada.next_publication("chat:burst")["data"] for _ in range(20)] == list(range(20))


def test_a_server_close_is_reported_with_its_code(realtime: HubTester) -> None:
    with realtime.connect(token="") as ada:
        realtime.call(realtime.hub.disconnect, "")
        assert ada.wait_closed() == (3503, "force disconnect")
        with pytest.raises(ConnectionClosed) as closed:
            ada.next_push(timeout=0.2)
        assert closed.value.code == 3503


def test_the_reader_thread_ends_with_the_connection(realtime: HubTester) -> None:
    with realtime.connect() as ada:
        reader = ada._reader
        assert reader.is_alive()
    assert not reader.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "protocol-test-client"]


def test_tokens_for_jwt_auth() -> None:
    hub = Hub(HubSettings(namespaces={"": ChannelOptions(), "team": ChannelOptions()}), auth=JWTAuth(secret=SECRET))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router())
    with TestClient(app) as test_client:
        tester = HubTester(test_client, hub)
        token = make_token(SECRET, user="ada", channels=["team:news"], info={"name": "Ada"}, ttl=60)
        with tester.connect(token=token) as ada:
            assert set(ada.connect_result["subs"]) == {"team:news"}  # the token's server-side subscription
            sub_token = make_subscription_token(SECRET, user="ada", channel="$team:ops")
            assert "epoch" not in ada.subscribe("$team:ops", token=sub_token)
            with pytest.raises(ReplyError) as other:
                ada.subscribe("$team:board", token=sub_token)
            assert other.value.code == 103
        with pytest.raises(ReplyError) as expired:
            with tester.connect(token=make_token(SECRET, user="ada", ttl=-10)):
                pass
        assert expired.value.code == 109


def test_open_without_connect_lets_the_test_send_connect_itself(realtime: HubTester) -> None:
    with ProtocolTestClient.open(realtime.test_client, connect=False, timeout=1) as raw:
        result = raw.connect(name="my-test")
        assert result["client"] and result["version"].startswith("fastapi-realtime")
