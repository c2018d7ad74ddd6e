"""Codecs: what a session sends for publications, join/leave, messages and unsubscribes."""

from __future__ import annotations

import pytest

from fastapi_realtime.protocol.codecs import CentrifugeCodec, Codec, RawCodec, raw_text
from fastapi_realtime.protocol.messages import ClientInfo, Publication

INFO = ClientInfo(user="42", client="c1", conn_info=b'{"name":"Ann"}')


# -- CentrifugeCodec -----------------------------------------------------------------


def test_centrifuge_codec_batches_and_pings_with_empty_object() -> None:
    codec = CentrifugeCodec()
    assert codec.name == "json"
    assert codec.batching is True
    assert codec.ping == "{}"


def test_centrifuge_publication_is_a_pub_push_built_once() -> None:
    codec = CentrifugeCodec()
    pub = Publication(data=b'{"text":"hi"}', offset=15)
    frame = codec.publication("chat:42", pub)
    assert frame == '{"push":{"channel":"chat:42","pub":{"data":{"text":"hi"},"offset":15}}}'
    assert CentrifugeCodec().publication("chat:42", pub) is frame


def test_centrifuge_join_and_leave() -> None:
    codec = CentrifugeCodec()
    body = '{"info":{"user":"42","client":"c1","conn_info":{"name":"Ann"}}}'
    assert codec.join("chat:1", INFO) == '{"push":{"channel":"chat:1","join":' + body + "}}"
    assert codec.leave("chat:1", INFO) == '{"push":{"channel":"chat:1","leave":' + body + "}}"


def test_centrifuge_message_has_no_channel() -> None:
    assert CentrifugeCodec().message(b'{"a":1}') == '{"push":{"message":{"data":{"a":1}}}}'


def test_centrifuge_unsubscribe() -> None:
    assert CentrifugeCodec().unsubscribe("news", 2500, "insufficient state") == (
        '{"push":{"channel":"news","unsubscribe":{"code":2500,"reason":"insufficient state"}}}'
    )


# -- RawCodec ------------------------------------------------------------------------


def test_raw_codec_sends_one_message_per_frame_and_no_ping_by_default() -> None:
    codec = RawCodec()
    assert codec.batching is False
    assert codec.ping is None
    assert RawCodec(ping="ping").ping == "ping"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b'"hello"', "hello"),
        (b'"line\\nbreak \\"quoted\\" \\u00e9"', 'line\nbreak "quoted" é'),
        (b'""', ""),
        (b'"{\\"a\\":1}"', '{"a":1}'),
    ],
)
def test_raw_codec_unwraps_json_strings(data: bytes, text: str) -> None:
    assert RawCodec().publication("room", Publication(data=data)) == text
    assert RawCodec().message(data) == text
    assert raw_text(data) == text


@pytest.mark.parametrize("data", [b'{"a":1}', b"[1,2]", b"42", b"null", b"true", b"1.5"])
def test_raw_codec_leaves_other_json_as_text(data: bytes) -> None:
    assert RawCodec().publication("room", Publication(data=data)) == data.decode()
    assert RawCodec().message(data) == data.decode()


def test_raw_codec_caches_the_frame_once_for_every_room() -> None:
    pub = Publication(data=b'"hi"')
    frame = RawCodec().publication("a", pub)
    assert RawCodec().publication("b", pub) is frame


def test_raw_and_centrifuge_frames_of_one_publication_do_not_collide() -> None:
    pub = Publication(data=b'"hi"')
    assert RawCodec().publication("a", pub) == "hi"
    assert CentrifugeCodec().publication("a", pub) == '{"push":{"channel":"a","pub":{"data":"hi"}}}'
    assert RawCodec().publication("a", pub) == "hi"


def test_raw_codec_sends_no_join_leave_or_unsubscribe() -> None:
    codec: Codec = RawCodec()
    assert codec.join("room", INFO) is None
    assert codec.leave("room", INFO) is None
    assert codec.unsubscribe("room", 2000, "server unsubscribe") is None


def test_both_codecs_satisfy_the_protocol() -> None:
    codecs: list[Codec] = [CentrifugeCodec(), RawCodec()]
    assert [c.name for c in codecs] == ["json", "raw"]


def test_bidirectional_codec_wraps_subscribe_and_sends_no_uni_only_pushes() -> None:
    codec = CentrifugeCodec()
    assert codec.expects_pong
    assert (
        codec.subscribe("news", {"positioned": True}) == '{"push":{"channel":"news","subscribe":{"positioned":true}}}'
    )
    assert codec.refresh(60) is None
    assert codec.disconnect(3001, "shutdown") is None


def test_unidirectional_codec_sends_unwrapped_pushes_one_per_frame() -> None:
    codec = CentrifugeCodec(unidirectional=True)
    assert codec.name == "json-uni"
    assert not codec.batching
    assert not codec.expects_pong
    assert codec.ping == "{}"
    assert codec.connect({"client": "c1", "ping": 25}) == '{"connect":{"client":"c1","ping":25}}'
    assert codec.subscribe("news", {}) == '{"channel":"news","subscribe":{}}'
    assert codec.refresh(60) == '{"refresh":{"expires":true,"ttl":60}}'
    assert codec.disconnect(3001, "shutdown") == '{"disconnect":{"code":3001,"reason":"shutdown"}}'
    assert codec.join("room", INFO) == (
        '{"channel":"room","join":{"info":{"user":"42","client":"c1","conn_info":{"name":"Ann"}}}}'
    )


def test_unidirectional_and_bidirectional_pub_frames_are_cached_apart() -> None:
    pub = Publication(data=b"1", offset=3)
    uni = CentrifugeCodec(unidirectional=True).publication("a", pub)
    bidi = CentrifugeCodec().publication("a", pub)
    assert uni == '{"channel":"a","pub":{"data":1,"offset":3}}'
    assert bidi == '{"push":{"channel":"a","pub":{"data":1,"offset":3}}}'
    assert CentrifugeCodec(unidirectional=True).publication("a", pub) is uni
