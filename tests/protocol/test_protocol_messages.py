"""to_raw / from_raw and the wire dataclasses."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from fastapi_realtime.protocol.messages import ClientInfo, Publication, StreamPosition, from_raw, to_raw


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        ({"a": 1}, b'{"a":1}'),
        ([1, "x", None], b'[1,"x",null]'),
        ("text", b'"text"'),
        ("line\nbreak", b'"line\\nbreak"'),
        (None, b"null"),
        (0, b"0"),
        (True, b"true"),
    ],
)
def test_to_raw_encodes_python_values(value: object, raw: bytes) -> None:
    assert to_raw(value) == raw
    assert from_raw(raw) == value


def test_to_raw_takes_bytes_as_json_unchanged() -> None:
    raw = b'{"z":1, "a":[1.50]}'
    assert to_raw(raw) is raw


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_to_raw_accepts_every_bytes_like(kind: type) -> None:
    out = to_raw(kind(b'{"a":1}'))
    assert type(out) is bytes
    assert out == b'{"a":1}'


def test_to_raw_strips_raw_newlines_from_json_bytes() -> None:
    out = to_raw(b'{\n  "a": 1,\n  "b": "x\\ny"\n}\n')
    assert b"\n" not in out
    assert out == b'{  "a": 1,  "b": "x\\ny"}'
    assert from_raw(out) == {"a": 1, "b": "x\ny"}


@pytest.mark.parametrize("raw", [b"", b"not json", b"{", b"\xff", b"{'a': 1}", b'"unterminated'])
def test_to_raw_validates_bytes_as_json(raw: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        to_raw(raw)
    assert issubclass(orjson.JSONDecodeError, ValueError)


def test_to_raw_refuses_unserialisable_values() -> None:
    with pytest.raises(TypeError):
        to_raw(object())


def test_from_raw_of_none_is_none() -> None:
    assert from_raw(None) is None


def test_from_raw_of_invalid_json_raises() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        from_raw(b"nope")


def test_wire_types_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        StreamPosition(1, "e").offset = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClientInfo(user="u", client="c").user = "v"  # type: ignore[misc]


def test_publication_equality_ignores_the_frame_cache() -> None:
    a, b = Publication(data=b"1", offset=2), Publication(data=b"1", offset=2)
    a.encoded["json"] = "frame"
    assert a == b
    assert b.encoded == {}
    assert "encoded" not in repr(a)
