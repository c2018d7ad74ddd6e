"""The fossil delta encoder: byte-exact against the C reference, decodable by the SDK."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from centrifuge.fossil import apply_delta

from fastapi_realtime.protocol.fossil import DIGITS, checksum, create_delta

# Made with Fossil SCM's delta.c (the C implementation, via PyPI's python-fossil-delta 18.11.27).
VECTORS = json.loads((Path(__file__).parent / "fossil_vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS, ids=range(len(VECTORS)))
def test_delta_is_the_reference_implementations(vector: dict[str, str]) -> None:
    source, target = vector["source"].encode(), vector["target"].encode()
    delta = create_delta(source, target)
    assert delta == vector["delta"].encode()
    assert apply_delta(source, delta) == target


def test_format_header_copy_insert_checksum() -> None:
    source = b"0123456789abcdefghijklmnopqrstuvwxyz"
    delta = create_delta(source, source + b"!")
    header, body = delta.split(b"\n", 1)
    assert header == b"a"  # 37 in base 64 (0-9, A-Z, _, a-z, ~)
    assert body.startswith(b"_@0,") and body.endswith(b";")  # copy 36 bytes from offset 0
    assert body[4:7] == b"1:!"  # insert one literal byte


def test_checksum_pads_the_last_word() -> None:
    assert checksum(b"") == 0
    assert checksum(b"\x00\x00\x00\x01") == 1
    assert checksum(b"\x01") == 0x01000000
    assert checksum(b"\xff\xff\xff\xff\x00\x00\x00\x01") == 0  # 32-bit wrap-around


def test_alphabet_is_64_digits() -> None:
    assert len(DIGITS) == len(set(DIGITS)) == 64


def test_random_edits_round_trip_through_the_sdk_decoder() -> None:
    rnd = random.Random(42)
    for _ in range(300):
        source = rnd.randbytes(rnd.choice([0, 3, 16, 17, 64, 700, 3000]))
        target = bytearray(source)
        for _ in range(rnd.randint(0, 6)):
            at = rnd.randint(0, len(target))
            if rnd.random() < 0.5:
                target[at:at] = rnd.randbytes(rnd.randint(1, 50))
            else:
                del target[at : at + rnd.randint(1, 50)]
        assert apply_delta(source, create_delta(source, bytes(target))) == bytes(target)


def test_small_change_in_a_json_state_gives_a_small_delta() -> None:
    state = {"items": [{"id": i, "name": f"item {i}", "qty": i} for i in range(100)]}
    before = json.dumps(state).encode()
    state["items"][50]["qty"] = 999
    after = json.dumps(state).encode()
    delta = create_delta(before, after)
    assert len(delta) < len(after) // 20
    assert apply_delta(before, delta) == after
