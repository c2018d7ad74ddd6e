"""Malformed WebSocket frames and commands at every endpoint: each ends in a close code, the
server logs no traceback, and a bystander on the same hub keeps receiving."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, WebSocket
from websockets.frames import Opcode
from wsclient import ProtocolClient

from fastapi_realtime import ChannelOptions, Hub, HubSettings, uvicorn_config
from security.conftest import ServerLog, serving
from security.rawws import RawClient, raw_frame

TEXT, BINARY, PING = Opcode.TEXT.value, Opcode.BINARY.value, Opcode.PING.value

BAD_FRAMES = {
    # name: (frame, close codes accepted from the protocol endpoint, from the tutorial JSON echo
    # endpoint or None when the frame is valid JSON there and is echoed)
    "invalid UTF-8 text": (raw_frame(TEXT, b'{"id":1,"connect":{}}\xff\xfe'), {1007}, {1007}),
    "unmasked frame": (raw_frame(TEXT, b"{}", masked=False), {1002}, {1002}),
    "reserved opcode": (raw_frame(0x3, b"x"), {1002}, {1002}),
    "reserved bits": (raw_frame(TEXT, b"{}", rsv=0x20), {1002}, {1002}),
    "ping over 125 bytes": (raw_frame(PING, b"p" * 200), {1002}, {1002}),
    "fragmented ping": (raw_frame(PING, b"p", fin=False), {1002}, {1002}),
    "continuation without a start": (raw_frame(0x0, b"x"), {1002}, {1002}),
    "binary garbage": (raw_frame(BINARY, bytes(range(256))), {3501}, {1003}),
    "invalid JSON": (raw_frame(TEXT, b'{"id":1,"connect":'), {3501}, {1003}),
    "deep nesting": (raw_frame(TEXT, b"[" * 10000), {3501}, {1003}),
    "a command before connect": (raw_frame(TEXT, b'{"id":1,"subscribe":{"channel":"news"}}'), {3501}, None),
    "huge command id": (raw_frame(TEXT, b'{"id":99999999999999999999,"connect":{}}'), {3501}, None),
}


def bad_frames_app() -> tuple[Hub, FastAPI]:
    hub = Hub(HubSettings(allow_anonymous=True, namespaces={"": ChannelOptions()}))
    app = FastAPI(lifespan=hub.lifespan)
    app.include_router(hub.router(uni_path="/connection/uni_websocket"))

    @app.websocket("/json")
    async def echo_json(websocket: WebSocket) -> None:
        async with hub.connection(websocket) as conn:
            async for value in conn.iter_json():
                await conn.send_json(value)

    return hub, app


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_a_bad_frame_closes_only_its_connection(server_log: ServerLog, name: str) -> None:
    frame, protocol_codes, tutorial_codes = BAD_FRAMES[name]
    hub, app = bad_frames_app()
    config = uvicorn_config(app, hub=hub, log_level="info", ws_ping_interval=None)
    async with serving(config, server_log) as server:
        bystander = await ProtocolClient.open(server.ws_url + "/connection/websocket", ("news",))
        for path, codes in (("/connection/websocket", protocol_codes), ("/json", tutorial_codes)):
            attacker = await RawClient.open(server.port, path)
            await attacker.write(frame)
            if codes is None:
                assert await attacker.next_text() is not None
                attacker.sock.close()
            else:
                assert await attacker.close_code() in codes, path
        if tutorial_codes is not None:  # not a JSON object: no connect request either
            uni = await RawClient.open(server.port, "/connection/uni_websocket")
            await uni.write(frame)
            assert await uni.close_code() is not None  # a close frame, whichever code
        await hub.publish("news", {"after": name})
        assert (await bystander.next_push())["pub"]["data"] == {"after": name}
        await bystander.close()
