"""decode_frame / decode_command: frames in, typed commands or a 3501 Disconnect out. No I/O."""

from __future__ import annotations

import orjson
import pytest

from fastapi_realtime.protocol.codes import DisconnectCode, ErrorCode
from fastapi_realtime.protocol.commands import (
    MAX_UINT32,
    ChannelRequest,
    Command,
    ConnectRequest,
    HistoryRequest,
    PingRequest,
    PublishRequest,
    RefreshRequest,
    RPCRequest,
    SendRequest,
    SubRefreshRequest,
    SubscribeRequest,
    decode_command,
    decode_frame,
)
from fastapi_realtime.protocol.errors import Disconnect
from fastapi_realtime.protocol.messages import StreamPosition


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def assert_bad_request(frame: str | bytes) -> Disconnect:
    with pytest.raises(Disconnect) as info:
        decode_frame(frame)
    assert info.value.code == DisconnectCode.BAD_REQUEST
    return info.value


def only(frame: str | bytes) -> Command:
    commands = decode_frame(frame)
    assert len(commands) == 1
    return commands[0]


# -- well-formed frames --------------------------------------------------------------


def test_single_command_is_decoded_with_its_id_and_method() -> None:
    cmd = only('{"id":1,"connect":{"token":"t","name":"js","version":"5"}}')
    assert cmd == Command(id=1, method="connect", request=ConnectRequest(token="t", name="js", version="5"))
    assert not cmd.is_pong


def test_newline_delimited_commands_are_decoded_in_order() -> None:
    # centrifuge-js's first frame: connect, then every pending subscribe.
    frame = "\n".join(
        [
            '{"id":1,"connect":{"name":"js"}}',
            '{"id":2,"subscribe":{"channel":"chat:a"}}',
            '{"id":3,"subscribe":{"channel":"chat:b","recover":true,"epoch":"x7","offset":14}}',
        ]
    )
    commands = decode_frame(frame)
    assert [(c.id, c.method) for c in commands] == [(1, "connect"), (2, "subscribe"), (3, "subscribe")]
    assert commands[2].request == SubscribeRequest(channel="chat:b", recover=True, epoch="x7", offset=14)


def test_bytes_frame_is_decoded_as_utf8_text() -> None:
    cmd = only('{"id":4,"publish":{"channel":"chat:é","data":{"t":"ü"}}}'.encode())
    assert cmd.request == PublishRequest(channel="chat:é", data='{"t":"ü"}'.encode())


@pytest.mark.parametrize("frame", ["{}", '{"id":0}', " {} ", "{}\n"])
def test_empty_command_is_a_pong(frame: str) -> None:
    cmd = only(frame)
    assert cmd == Command(id=0, method="")
    assert cmd.is_pong


def test_pong_can_share_a_frame_with_commands() -> None:
    commands = decode_frame('{}\n{"id":5,"ping":{}}')
    assert [c.is_pong for c in commands] == [True, False]
    assert commands[1].request == PingRequest()


@pytest.mark.parametrize("frame", ['{"send":{"data":{"a":1}}}', '{"id":0,"send":{"data":{"a":1}}}'])
def test_send_is_allowed_without_id(frame: str) -> None:
    assert only(frame) == Command(id=0, method="send", request=SendRequest(data=b'{"a":1}'))


def test_send_with_an_id_is_accepted_too() -> None:
    assert only('{"id":9,"send":{}}') == Command(id=9, method="send", request=SendRequest(data=None))


@pytest.mark.parametrize(
    ("frame", "request_"),
    [
        ('{"id":1,"connect":{}}', ConnectRequest()),
        (
            '{"id":1,"connect":{"token":"t","data":{"x":1},"subs":{"news":{"recover":true,"offset":3,"epoch":"e"}},'
            '"headers":{"h":"v"}}}',
            ConnectRequest(
                token="t",
                data=b'{"x":1}',
                subs={"news": SubscribeRequest(channel="news", recover=True, offset=3, epoch="e")},
                headers={"h": "v"},
            ),
        ),
        (
            '{"id":1,"subscribe":{"channel":"c","token":"t","data":[1],"positioned":true,"recoverable":true,'
            '"join_leave":true}}',
            SubscribeRequest(channel="c", token="t", data=b"[1]", positioned=True, recoverable=True, join_leave=True),
        ),
        ('{"id":1,"unsubscribe":{"channel":"c"}}', ChannelRequest(channel="c")),
        ('{"id":1,"presence":{"channel":"c"}}', ChannelRequest(channel="c")),
        ('{"id":1,"presence_stats":{"channel":"c"}}', ChannelRequest(channel="c")),
        ('{"id":1,"publish":{"channel":"c","data":"hi"}}', PublishRequest(channel="c", data=b'"hi"')),
        ('{"id":1,"publish":{"channel":"c"}}', PublishRequest(channel="c", data=b"null")),
        (
            '{"id":1,"history":{"channel":"c","limit":10,"since":{"offset":2,"epoch":"x7"},"reverse":true}}',
            HistoryRequest(channel="c", limit=10, since=StreamPosition(2, "x7"), reverse=True),
        ),
        ('{"id":1,"history":{"channel":"c","limit":-1,"since":null}}', HistoryRequest(channel="c", limit=-1)),
        ('{"id":1,"rpc":{"method":"m","data":{"id":1}}}', RPCRequest(method="m", data=b'{"id":1}')),
        ('{"id":1,"refresh":{"token":"t"}}', RefreshRequest(token="t")),
        ('{"id":1,"sub_refresh":{"channel":"c","token":"t"}}', SubRefreshRequest(channel="c", token="t")),
        ('{"id":1,"ping":{}}', PingRequest()),
    ],
)
def test_every_method_parses_into_its_request(frame: str, request_: object) -> None:
    cmd = only(frame)
    assert cmd.error is None
    assert cmd.request == request_


def test_first_non_null_method_wins() -> None:
    cmd = only('{"id":3,"connect":null,"subscribe":{"channel":"a"},"publish":{"channel":"b"}}')
    assert (cmd.method, cmd.request) == ("subscribe", SubscribeRequest(channel="a"))


def test_unknown_fields_beside_a_method_are_ignored() -> None:
    cmd = only('{"id":3,"subscribe":{"channel":"a","cursor":"x","phase":2},"extra":true}')
    assert cmd.request == SubscribeRequest(channel="a")


def test_subscribe_options_delta_tags_filter_and_flag_are_parsed() -> None:
    cmd = only('{"id":3,"subscribe":{"channel":"a","delta":"fossil","tf":{"key":"k","cmp":"ex"},"flag":3}}')
    assert cmd.request == SubscribeRequest(channel="a", delta="fossil", tf={"key": "k", "cmp": "ex"}, flag=3)


@pytest.mark.parametrize("body", ['"delta":1', '"tf":[1]', '"flag":-1', '"flag":"2"'])
def test_subscribe_options_of_the_wrong_type_are_107(body: str) -> None:
    cmd = only(f'{{"id":3,"subscribe":{{"channel":"a",{body}}}}}')
    assert cmd.error is not None and cmd.error.code == 107


def test_max_uint32_id_is_accepted() -> None:
    assert only(f'{{"id":{MAX_UINT32},"ping":{{}}}}').id == MAX_UINT32


# -- whitespace ----------------------------------------------------------------------


def test_crlf_separated_commands_are_decoded() -> None:
    commands = decode_frame('{"id":1,"ping":{}}\r\n{"id":2,"ping":{}}\r\n')
    assert [c.id for c in commands] == [1, 2]


def test_blank_lines_and_surrounding_whitespace_are_skipped() -> None:
    commands = decode_frame('\n\n  {"id":1,"ping":{}}  \n\n\t\n{"id":2,"ping":{}}\n\n')
    assert [c.id for c in commands] == [1, 2]


def test_whitespace_inside_a_command_is_allowed() -> None:
    assert only('{ "id" : 7 ,\t"ping" : { } }').id == 7


# -- commands answered with an error reply (id kept) ---------------------------------


def test_unknown_method_with_id_gets_error_104() -> None:
    cmd = only('{"id":12,"subscribe_all":{"channel":"x"}}')
    assert (cmd.id, cmd.method, cmd.request) == (12, "subscribe_all", None)
    assert cmd.error is not None
    assert cmd.error.code == ErrorCode.METHOD_NOT_FOUND
    assert not cmd.is_pong


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"id":7,"subscribe":{"channel":5}}', "channel must be a string"),
        ('{"id":7,"subscribe":{"channel":"c","recover":"yes"}}', "recover must be a boolean"),
        ('{"id":7,"subscribe":{"channel":"c","offset":-1}}', "offset must be a non-negative integer"),
        ('{"id":7,"subscribe":{"channel":"c","offset":1.5}}', "offset must be a non-negative integer"),
        ('{"id":7,"subscribe":{"channel":"c","offset":true}}', "offset must be a non-negative integer"),
        ('{"id":7,"subscribe":"chat"}', "subscribe must be an object"),
        ('{"id":7,"subscribe":[]}', "subscribe must be an object"),
        ('{"id":7,"connect":{"token":1}}', "token must be a string"),
        ('{"id":7,"connect":{"subs":["a"]}}', "subs must be an object"),
        ('{"id":7,"connect":{"subs":{"a":{"offset":"1"}}}}', "offset must be a non-negative integer"),
        ('{"id":7,"connect":{"headers":{"a":1}}}', "headers must map strings to strings"),
        ('{"id":7,"history":{"channel":"c","limit":"10"}}', "limit must be an integer"),
        ('{"id":7,"history":{"channel":"c","limit":18446744073709551616}}', "limit must be an integer"),
        ('{"id":7,"history":{"channel":"c","since":5}}', "since must be an object"),
        ('{"id":7,"history":{"channel":"c","since":{"epoch":3}}}', "epoch must be a string"),
        ('{"id":7,"rpc":{"method":["m"]}}', "method must be a string"),
        ('{"id":7,"refresh":{"token":null}}', "token must be a string"),
    ],
)
def test_wrong_field_type_gets_error_107_and_keeps_the_id(frame: str, message: str) -> None:
    cmd = only(frame)
    assert cmd.id == 7
    assert cmd.request is None
    assert cmd.error is not None
    assert (cmd.error.code, cmd.error.message) == (ErrorCode.BAD_REQUEST, message)
    assert not cmd.is_pong


def test_bad_command_does_not_hide_the_good_ones_around_it() -> None:
    commands = decode_frame('{"id":1,"ping":{}}\n{"id":2,"subscribe":{"channel":1}}\n{"id":3,"ping":{}}')
    assert [(c.id, c.error is None) for c in commands] == [(1, True), (2, False), (3, True)]


@pytest.mark.parametrize("depth", [200, 254])
def test_moderately_nested_data_is_kept_verbatim(depth: int) -> None:
    cmd = only(f'{{"id":2,"publish":{{"channel":"c","data":{nested(depth)}}}}}')
    assert cmd.request == PublishRequest(channel="c", data=nested(depth).encode())


@pytest.mark.parametrize("depth", [255, 300, 1000])
def test_data_nested_past_the_encoder_limit_gets_error_107(depth: int) -> None:
    # orjson parses up to 1024 levels but re-encodes only 254: the gap must not escape as a TypeError.
    cmd = only(f'{{"id":2,"publish":{{"channel":"c","data":{nested(depth)}}}}}')
    assert cmd.id == 2
    assert cmd.error is not None
    assert cmd.error.code == ErrorCode.BAD_REQUEST


# -- frames that disconnect with 3501 ------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "\n",
        "   \r\n \n\t",
        b"",
    ],
)
def test_empty_frame_disconnects(frame: str | bytes) -> None:
    assert_bad_request(frame)


@pytest.mark.parametrize(
    "frame",
    [
        "{",
        '{"id":1,"ping":{}',
        "not json",
        '{"id":1,"ping":{}} trailing',
        '{"id":1,"ping":{}}{"id":2,"ping":{}}',
        "{'id': 1}",
        '{"id":NaN}',
        b"\xff\xfe\x00garbage",
        b"\x80\x81\x82",
    ],
)
def test_invalid_json_disconnects(frame: str | bytes) -> None:
    assert_bad_request(frame)


@pytest.mark.parametrize("line", ["[]", "[{}]", "1", '"ping"', "null", "true"])
def test_line_that_is_not_an_object_disconnects(line: str) -> None:
    assert_bad_request(line)
    assert_bad_request('{"id":1,"ping":{}}\n' + line)


def test_one_bad_line_rejects_the_whole_frame() -> None:
    assert_bad_request('{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"a"}}\n{oops}')


@pytest.mark.parametrize(
    "frame",
    [
        '{"connect":{}}',
        '{"id":0,"connect":{}}',
        '{"subscribe":{"channel":"a"}}',
        '{"id":0,"publish":{"channel":"a","data":1}}',
        '{"id":0,"ping":{}}',
        '{"rpc":{"method":"m"}}',
    ],
)
def test_command_without_id_other_than_send_disconnects(frame: str) -> None:
    assert_bad_request(frame)


@pytest.mark.parametrize(
    "id_",
    ["-1", str(MAX_UINT32 + 1), "18446744073709551616", "true", "false", "1.0", "1.5", '"1"', "null", "[1]", "{}"],
)
def test_invalid_id_disconnects(id_: str) -> None:
    assert_bad_request(f'{{"id":{id_},"ping":{{}}}}')


def test_unknown_method_without_id_disconnects() -> None:
    assert_bad_request('{"subscribe_all":{}}')


def test_id_without_method_disconnects() -> None:
    assert_bad_request('{"id":4}')


@pytest.mark.parametrize("depth", [1025, 10_000, 100_000])
def test_deeply_nested_data_disconnects_cleanly(depth: int) -> None:
    err = assert_bad_request(f'{{"id":2,"publish":{{"channel":"c","data":{nested(depth)}}}}}')
    assert not isinstance(err.__cause__, RecursionError)


def test_deeply_nested_objects_disconnect_cleanly() -> None:
    data = '{"a":' * 10_000 + "1" + "}" * 10_000
    assert_bad_request(f'{{"id":2,"publish":{{"channel":"c","data":{data}}}}}')


# -- size ----------------------------------------------------------------------------


def test_huge_frame_of_many_commands_is_decoded() -> None:
    frame = "\n".join(f'{{"id":{i},"ping":{{}}}}' for i in range(1, 50_001))
    commands = decode_frame(frame)
    assert len(commands) == 50_000
    assert commands[-1].id == 50_000


def test_huge_payload_is_kept_verbatim() -> None:
    data = orjson.dumps({"blob": "x" * 8_000_000})
    cmd = only(b'{"id":1,"publish":{"channel":"c","data":' + data + b"}}")
    assert isinstance(cmd.request, PublishRequest)
    assert cmd.request.data == data


def test_huge_invalid_frame_disconnects() -> None:
    assert_bad_request("[" * 5_000_000)


# -- decode_command on parsed values -------------------------------------------------


def test_decode_command_takes_a_parsed_value() -> None:
    assert decode_command({"id": 3, "presence": {"channel": "c"}}) == Command(
        id=3, method="presence", request=ChannelRequest(channel="c")
    )


@pytest.mark.parametrize("value", [None, [], "x", 1])
def test_decode_command_refuses_non_objects(value: object) -> None:
    with pytest.raises(Disconnect) as info:
        decode_command(value)
    assert info.value.code == DisconnectCode.BAD_REQUEST
