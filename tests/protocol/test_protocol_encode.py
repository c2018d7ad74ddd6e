"""encode: replies and pushes as exact JSON strings; raw payloads embedded verbatim. No I/O."""

from __future__ import annotations

import orjson
import pytest

from fastapi_realtime.protocol import encode
from fastapi_realtime.protocol.codes import ErrorCode
from fastapi_realtime.protocol.errors import ReplyError
from fastapi_realtime.protocol.messages import ClientInfo, Publication, StreamPosition

# -- replies -------------------------------------------------------------------------


def test_reply_wraps_the_result_under_the_method_name() -> None:
    assert encode.reply(1, "subscribe", {}) == '{"id":1,"subscribe":{}}'
    assert encode.reply(6, "presence_stats", {"num_clients": 2, "num_users": 1}) == (
        '{"id":6,"presence_stats":{"num_clients":2,"num_users":1}}'
    )


def test_reply_embeds_fragments_verbatim() -> None:
    result = {"client": "c1", "data": orjson.Fragment(b'{"b":2,"a":1}')}
    assert encode.reply(1, "connect", result) == '{"id":1,"connect":{"client":"c1","data":{"b":2,"a":1}}}'


def test_reply_keeps_uint64_values_as_numbers() -> None:
    assert encode.reply(4, "history", {"offset": 2**64 - 1}) == '{"id":4,"history":{"offset":18446744073709551615}}'


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ReplyError(ErrorCode.PERMISSION_DENIED), '{"id":2,"error":{"code":103,"message":"permission denied"}}'),
        (ReplyError(ErrorCode.METHOD_NOT_FOUND), '{"id":2,"error":{"code":104,"message":"method not found"}}'),
        (
            ReplyError(ErrorCode.BAD_REQUEST, "channel required"),
            '{"id":2,"error":{"code":107,"message":"channel required"}}',
        ),
        (
            ReplyError(ErrorCode.INTERNAL),
            '{"id":2,"error":{"code":100,"message":"internal","temporary":true}}',
        ),
        (
            ReplyError(ErrorCode.TOO_MANY_REQUESTS),
            '{"id":2,"error":{"code":111,"message":"too many requests","temporary":true}}',
        ),
        (ReplyError(4001, "custom"), '{"id":2,"error":{"code":4001,"message":"custom"}}'),
        (ReplyError(4001), '{"id":2,"error":{"code":4001,"message":"error"}}'),
        (
            ReplyError(4001, "retry", temporary=True),
            '{"id":2,"error":{"code":4001,"message":"retry","temporary":true}}',
        ),
        (
            ReplyError(ErrorCode.TOO_MANY_REQUESTS, temporary=False),
            '{"id":2,"error":{"code":111,"message":"too many requests"}}',
        ),
    ],
)
def test_error_reply_is_exact(error: ReplyError, expected: str) -> None:
    assert encode.error_reply(2, error) == expected


@pytest.mark.parametrize("code", list(ErrorCode))
def test_only_100_and_111_are_temporary(code: ErrorCode) -> None:
    body = orjson.loads(encode.error_reply(1, ReplyError(code)))["error"]
    assert ("temporary" in body) == (code in (100, 111))


# -- pushes --------------------------------------------------------------------------


def test_push_names_the_channel_and_the_kind() -> None:
    assert encode.push("chat:1", "unsubscribe", {"code": 2000, "reason": "server unsubscribe"}) == (
        '{"push":{"channel":"chat:1","unsubscribe":{"code":2000,"reason":"server unsubscribe"}}}'
    )


def test_push_without_channel_leaves_it_out() -> None:
    assert encode.push("", "message", {"data": orjson.Fragment(b"[1,2]")}) == '{"push":{"message":{"data":[1,2]}}}'


def test_ping_is_the_empty_object() -> None:
    assert encode.PING == "{}"


# -- publications --------------------------------------------------------------------


def test_pub_push_with_only_data_leaves_zero_fields_out() -> None:
    pub = Publication(data=b'{"text":"hi"}')
    assert encode.pub_push_frame("chat:42", pub) == '{"push":{"channel":"chat:42","pub":{"data":{"text":"hi"}}}}'


def test_pub_push_with_every_field() -> None:
    info = ClientInfo(user="42", client="c1", conn_info=b'{"n":"a"}', chan_info=b"[1]")
    pub = Publication(data=b"1", offset=15, info=info, tags={"k": "v"}, time=1700000000000)
    assert encode.pub_push_frame("chat:42", pub) == (
        '{"push":{"channel":"chat:42","pub":{"data":1,'
        '"info":{"user":"42","client":"c1","conn_info":{"n":"a"},"chan_info":[1]},'
        '"offset":15,"tags":{"k":"v"},"time":1700000000000}}}'
    )


def test_pub_data_is_embedded_verbatim_not_reencoded() -> None:
    raw = b'{"z":1,"a":[1.50,"\\u00e9"]}'
    frame = encode.pub_push_frame("c", Publication(data=raw))
    assert frame == '{"push":{"channel":"c","pub":{"data":' + raw.decode() + "}}}"


@pytest.mark.parametrize("data", [b'"text"', b"null", b"0", b"false", b"[]", b"{}"])
def test_zero_valued_payloads_are_still_sent(data: bytes) -> None:
    assert encode.pub_push_frame("c", Publication(data=data)) == (
        '{"push":{"channel":"c","pub":{"data":' + data.decode() + "}}}"
    )


def test_pub_frame_is_cached_per_codec() -> None:
    pub = Publication(data=b'{"n":1}', offset=3)
    first = encode.pub_push_frame("chat:a", pub)
    assert encode.pub_push_frame("chat:a", pub) is first
    uni = encode.pub_push_frame("chat:a", pub, wrapped=False)
    assert uni == '{"channel":"chat:a","pub":{"data":{"n":1},"offset":3}}'
    assert encode.pub_push_frame("chat:a", pub, wrapped=False) is uni
    assert set(pub.encoded) == {"json", "json-uni"}  # a publication belongs to one channel


def test_cache_does_not_leak_between_equal_publications() -> None:
    a, b = Publication(data=b"1"), Publication(data=b"1")
    assert a == b
    assert encode.pub_push_frame("c", a) is not encode.pub_push_frame("c", b)


def test_publication_dict_round_trips_through_a_reply() -> None:
    pubs = [encode.publication_dict(Publication(data=b'"x"', offset=n)) for n in (3, 4)]
    assert encode.reply(7, "history", {"publications": pubs, "epoch": "e", "offset": 4}) == (
        '{"id":7,"history":{"publications":[{"data":"x","offset":3},{"data":"x","offset":4}],"epoch":"e","offset":4}}'
    )


# -- client info and positions -------------------------------------------------------


def test_client_info_dict_always_has_user_and_client() -> None:
    assert orjson.dumps(encode.client_info_dict(ClientInfo(user="", client="c1"))) == b'{"user":"","client":"c1"}'


def test_client_info_dict_embeds_conn_and_chan_info_raw() -> None:
    info = ClientInfo(user="u", client="c", conn_info=b'{"name":"Ann","tags":[1,2]}', chan_info=b'"mod"')
    out = encode.client_info_dict(info)
    assert isinstance(out["conn_info"], orjson.Fragment)
    assert orjson.dumps(out) == b'{"user":"u","client":"c","conn_info":{"name":"Ann","tags":[1,2]},"chan_info":"mod"}'


def test_client_info_dict_leaves_missing_infos_out() -> None:
    assert set(encode.client_info_dict(ClientInfo(user="u", client="c", chan_info=b"1"))) == {
        "user",
        "client",
        "chan_info",
    }


@pytest.mark.parametrize(
    ("pos", "expected"),
    [
        (StreamPosition(0, ""), {}),
        (StreamPosition(0, "e"), {"epoch": "e"}),
        (StreamPosition(5, ""), {"offset": 5}),
        (StreamPosition(5, "e"), {"offset": 5, "epoch": "e"}),
    ],
)
def test_position_dict_leaves_zero_fields_out(pos: StreamPosition, expected: dict[str, object]) -> None:
    assert encode.position_dict(pos) == expected
