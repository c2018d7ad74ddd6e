"""Fossil delta encoding (the ``fossil`` delta type of the Centrifuge protocol). Pure.

A delta turns a *source* byte string into a *target*: the header is the target's length,
then come copy commands (``<count>@<offset>,``: bytes of the source), insert commands
(``<count>:<bytes>``: literal bytes) and a trailer with the target's checksum
(``<checksum>;``). Numbers are written in the base-64 alphabet of :data:`DIGITS`. The SDKs
(centrifuge-js, centrifuge-python) apply these deltas; this module only creates them.

The algorithm is Fossil SCM's ``delta_create`` (``src/delta.c``, public domain): the source is
cut into 16-byte blocks indexed by a rolling hash, the target is scanned with the same hash,
and every candidate match is extended forwards and backwards; a copy is emitted when it
costs fewer bytes than inserting what it covers. ``tests/protocol/test_fossil.py`` checks the
output byte for byte against the C implementation's, and that the SDKs' decoder restores every
target.
"""

from __future__ import annotations

import struct
from itertools import accumulate

DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
NHASH = 16
"""Bytes per hashed block of the source."""
_MAX_CANDIDATES = 250
"""Source blocks tried per target position (bounds the work on repetitive input)."""


def _int(value: int) -> bytes:
    """``value`` in the delta's base-64 notation."""
    if value == 0:
        return b"0"
    out = bytearray()
    while value > 0:
        out.append(DIGITS[value & 0x3F])
        value >>= 6
    out.reverse()
    return bytes(out)


def _digit_count(value: int) -> int:
    count, limit = 1, 64
    while value >= limit:
        count += 1
        limit <<= 6
    return count


def checksum(data: bytes) -> int:
    """The 32-bit checksum of ``data``: the sum of its big-endian 32-bit words, the last
    partial word padded with zero bytes on the right."""
    full = len(data) & ~3
    total: int = sum(struct.unpack(f">{full // 4}I", data[:full]))
    tail = data[full:]
    if tail:
        total += int.from_bytes(tail.ljust(4, b"\0"), "big")
    return total & 0xFFFFFFFF


class _RollingHash:
    """The rolling hash of a 16-byte window (Fossil's ``hash``)."""

    __slots__ = ("a", "b", "i", "z")

    def __init__(self, window: bytes) -> None:
        self.z = bytearray(window)
        a = b = window[0]
        for byte in window[1:NHASH]:
            a += byte
            b += a
        self.a, self.b, self.i = a & 0xFFFF, b & 0xFFFF, 0

    def next(self, byte: int) -> None:
        old = self.z[self.i]
        self.z[self.i] = byte
        self.i = (self.i + 1) & (NHASH - 1)
        self.a = (self.a - old + byte) & 0xFFFF
        self.b = (self.b - NHASH * old + self.a) & 0xFFFF

    def value(self) -> int:
        return self.a | (self.b << 16)


def _block_hash(window: bytes) -> int:
    """:class:`_RollingHash` of one 16-byte window, without building one: ``a`` is the sum of
    the bytes, ``b`` the sum of their prefix sums."""
    return (sum(window) & 0xFFFF) | ((sum(accumulate(window)) & 0xFFFF) << 16)


def _match_length(source: bytes, x: int, target: bytes, y: int) -> int:
    """How many bytes ``source[x:]`` and ``target[y:]`` have in common at their start
    (compared in slices, then byte by byte)."""
    n = 0
    limit = min(len(source) - x, len(target) - y)
    step = 256
    while step:
        while n + step <= limit and source[x + n : x + n + step] == target[y + n : y + n + step]:
            n += step
        step >>= 2
    while n < limit and source[x + n] == target[y + n]:
        n += 1
    return n


def create_delta(source: bytes, target: bytes) -> bytes:
    """The fossil delta that turns ``source`` into ``target``."""
    out = bytearray(_int(len(target)))
    out += b"\n"
    len_src, len_out = len(source), len(target)
    if len_src <= NHASH:
        out += _int(len_out) + b":" + target + _int(checksum(target)) + b";"
        return bytes(out)

    n_hash = len_src // NHASH
    collide = [-1] * n_hash
    landmark = [-1] * n_hash
    for i in range(0, len_src - NHASH, NHASH):
        h = _block_hash(source[i : i + NHASH]) % n_hash
        collide[i // NHASH] = landmark[h]
        landmark[h] = i // NHASH

    base = 0
    while base + NHASH < len_out:
        rolling = _RollingHash(target[base : base + NHASH])
        i = 0
        best_cnt = best_ofst = best_litsz = 0
        while True:
            block = landmark[rolling.value() % n_hash]
            tries = _MAX_CANDIDATES
            while block >= 0 and tries > 0:
                tries -= 1
                src_at = block * NHASH
                # Extend the match forwards from (src_at, base + i) ...
                j = _match_length(source, src_at, target, base + i) - 1
                # ... and backwards, not past the start of the pending literal.
                k = 1
                while k < src_at and k <= i and source[src_at - k] == target[base + i - k]:
                    k += 1
                k -= 1
                ofst, cnt, litsz = src_at - k, j + k + 1, i - k
                cost = _digit_count(litsz) + _digit_count(cnt) + _digit_count(ofst) + 3
                if cnt >= cost and cnt > best_cnt:
                    best_cnt, best_ofst, best_litsz = cnt, ofst, litsz
                block = collide[block]
            if best_cnt > 0:
                if best_litsz > 0:
                    out += _int(best_litsz) + b":" + target[base : base + best_litsz]
                    base += best_litsz
                out += _int(best_cnt) + b"@" + _int(best_ofst) + b","
                base += best_cnt
                break
            if base + i + NHASH >= len_out:
                out += _int(len_out - base) + b":" + target[base:]
                base = len_out
                break
            rolling.next(target[base + i + NHASH])
            i += 1
    if base < len_out:
        out += _int(len_out - base) + b":" + target[base:]
    out += _int(checksum(target)) + b";"
    return bytes(out)
