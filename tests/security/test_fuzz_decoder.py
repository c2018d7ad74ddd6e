"""Fuzzing the protocol decoder and the codecs: whatever a client sends, decoding ends in
commands, error replies or a 3501 ``Disconnect``, never in any other exception.

Budget: the ``ci`` hypothesis profile in ``make test``; ``make soak`` runs the ``soak`` profile.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from fastapi_realtime.protocol.codecs import CentrifugeCodec, RawCodec
from fastapi_realtime.protocol.codes import DisconnectCode
from fastapi_realtime.protocol.commands import PARSERS, Command, decode_command, decode_frame
from fastapi_realtime.protocol.errors import Disconnect, ReplyError
from fastapi_realtime.protocol.messages import ClientInfo, Publication

FIELDS = [
    "channel", "token", "recover", "epoch", "offset", "data", "limit", "since", "reverse", "method",
    "subs", "headers", "name", "version", "join_leave", "positioned", "recoverable", "delta", "id",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what JSON numbers orjson reads as int
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
keys = st.sampled_from(FIELDS) | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6) | json_values
command_ids = st.one_of(st.integers(min_value=-5, max_value=2**33), st.booleans(), st.text(max_size=3), st.none())
methods = st.sampled_from([*PARSERS, "unknown", ""])


@st.composite
def commands(draw: st.DrawFn) -> Any:
    obj: dict[str, Any] = {}
    if draw(st.booleans()):
        obj["id"] = draw(command_ids)
    for method in draw(st.lists(methods, max_size=2)):
        obj[method] = draw(bodies)
    return obj if draw(st.integers(0, 9)) else draw(json_values)  # mostly objects, sometimes anything


def check(decode: Any, arg: Any) -> list[Command] | None:
    """Run ``decode(arg)``: commands, or ``None`` for a 3501 Disconnect; anything else fails."""
    try:
        result = decode(arg)
    except Disconnect as exc:
        code = exc.code
        assert code == DisconnectCode.BAD_REQUEST
        return None
    decoded = result if isinstance(result, list) else [result]
    for command in decoded:
        assert isinstance(command, Command)
        assert (command.request is None) or (command.error is None)
        assert command.error is None or isinstance(command.error, ReplyError)
    return decoded


@given(st.text())
@example("\ud800")  # a lone surrogate
@example('{"id":1,"publish":{"channel":"a","data":' + "[" * 300 + "]" * 300 + "}}")
@example("[" * 5000)
@example('{"id":1}\n\n{"id":2,"ping":{}}')
@example('{"id":99999999999999999999999,"ping":{}}')
@example('{"id":1,"history":{"channel":"a","limit":99999999999999999999999}}')
@example('{"id":1,"publish":{"channel":"a","data":1e400}}')
def test_any_text_frame_decodes_or_disconnects_with_3501(frame: str) -> None:
    check(decode_frame, frame)


@given(st.binary())
@example(b"\xff\xfe{}")
def test_any_binary_frame_decodes_or_disconnects_with_3501(frame: bytes) -> None:
    check(decode_frame, frame)


@given(st.lists(commands(), min_size=1, max_size=4))
def test_command_shaped_frames_decode_or_disconnect_with_3501(objs: list[Any]) -> None:
    frame = "\n".join(orjson.dumps(o).decode() for o in objs)
    decoded = check(decode_frame, frame)
    if decoded is not None:
        assert len(decoded) == len(objs)
    for obj in objs:
        check(decode_command, obj)


@given(json_values, st.text(max_size=30))
def test_codecs_encode_any_payload(value: Any, channel: str) -> None:
    raw = orjson.dumps(value)
    pub = Publication(data=raw, offset=3, info=ClientInfo(client="c", user="u", conn_info=raw))
    text = RawCodec().publication(channel, pub)
    assert text == (value if isinstance(value, str) else raw.decode())
    assert RawCodec().message(raw) == text
    for codec in (CentrifugeCodec(), CentrifugeCodec(unidirectional=True)):
        for frame in (codec.publication(channel, pub), codec.message(raw), codec.join(channel, pub.info)):
            assert orjson.loads(frame) is not None
