"""Publication tags filters (the ``tf`` field of a subscribe request). Pure.

A filter is a tree of nodes, as the SDKs build it (centrifuge-python's ``Filter``,
centrifuge-js's ``tagsFilter``) and Centrifugo evaluates it:

- a *leaf* compares one tag: ``{"key": k, "cmp": c, "val": v}`` or ``{"key": k, "cmp": c,
  "vals": [...]}``, ``cmp`` one of ``eq``, ``neq``, ``in``, ``nin``, ``ex`` (exists), ``nex``
  (does not exist), ``sw`` (starts with), ``ew`` (ends with), ``ct`` (contains), ``gt``,
  ``gte``, ``lt``, ``lte`` (numeric: both sides are read as decimal numbers);
- a *logical* node combines its ``nodes``: ``{"op": "and"|"or"|"not", "nodes": [...]}``
  (``not`` takes exactly one node; an empty ``and`` matches, an empty ``or`` does not).

A missing tag matches only ``neq``, ``nin`` and ``nex``; a numeric comparison with a tag that
is not a number does not match. :func:`parse` checks a filter once, at subscribe, so that
:meth:`TagsFilter.matches` never fails during fan-out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

LOGICAL_OPS = frozenset({"and", "or", "not"})
VALUE_CMPS = frozenset({"eq", "neq", "sw", "ew", "ct", "gt", "gte", "lt", "lte"})
SET_CMPS = frozenset({"in", "nin"})
PRESENCE_CMPS = frozenset({"ex", "nex"})
NUMERIC_CMPS: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
}


class InvalidFilter(ValueError):
    """The filter is malformed or larger than allowed (the subscribe gets error 107)."""


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class TagsFilter:
    """One checked filter node; :meth:`matches` evaluates it against a publication's tags."""

    op: str = ""
    key: str = ""
    cmp: str = ""
    val: str = ""
    vals: frozenset[str] = frozenset()
    nodes: tuple[TagsFilter, ...] = ()

    def matches(self, tags: Mapping[str, str] | None) -> bool:
        """Whether a publication with ``tags`` passes the filter."""
        if self.op == "and":
            return all(node.matches(tags) for node in self.nodes)
        if self.op == "or":
            return any(node.matches(tags) for node in self.nodes)
        if self.op == "not":
            return not self.nodes[0].matches(tags)
        value = None if tags is None else tags.get(self.key)
        cmp = self.cmp
        if value is None:
            return cmp in ("neq", "nin", "nex")
        if cmp == "eq":
            return value == self.val
        if cmp == "neq":
            return value != self.val
        if cmp == "in":
            return value in self.vals
        if cmp == "nin":
            return value not in self.vals
        if cmp == "ex":
            return True
        if cmp == "nex":
            return False
        if cmp == "sw":
            return value.startswith(self.val)
        if cmp == "ew":
            return value.endswith(self.val)
        if cmp == "ct":
            return self.val in value
        left, right = _number(value), _number(self.val)
        return left is not None and right is not None and NUMERIC_CMPS[cmp](left, right)


def parse(node: Any, *, max_nodes: int) -> TagsFilter:
    """Check a filter as decoded from JSON (or from its Protobuf message) and build it.

    Raises :class:`InvalidFilter` when it is malformed or has more than ``max_nodes`` nodes.
    """
    budget = [max_nodes]
    return _parse(node, budget)


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidFilter(f"{what} must be a list of strings")
    return value


def _parse(node: Any, budget: list[int]) -> TagsFilter:
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidFilter("tags filter has too many nodes")
    if not isinstance(node, Mapping):
        raise InvalidFilter("a tags filter node must be an object")
    op = node.get("op") or ""
    if op:
        if op not in LOGICAL_OPS:
            raise InvalidFilter(f"unknown tags filter op {op!r}")
        children = node.get("nodes", [])
        if not isinstance(children, list):
            raise InvalidFilter("nodes must be a list")
        if op == "not" and len(children) != 1:
            raise InvalidFilter("'not' takes exactly one node")
        return TagsFilter(op=op, nodes=tuple(_parse(child, budget) for child in children))
    key, cmp = node.get("key"), node.get("cmp")
    if not isinstance(key, str) or not key:
        raise InvalidFilter("a comparison needs a key")
    val = node.get("val") or ""
    if not isinstance(val, str):
        raise InvalidFilter("val must be a string")
    vals = _strings(node.get("vals") or [], "vals")
    if cmp in SET_CMPS:
        if not vals:
            raise InvalidFilter(f"{cmp!r} needs vals")
        return TagsFilter(key=key, cmp=cmp, vals=frozenset(vals))
    if cmp in NUMERIC_CMPS and _number(val) is None:
        raise InvalidFilter(f"{cmp!r} needs a numeric val")
    if cmp in VALUE_CMPS or cmp in PRESENCE_CMPS:
        return TagsFilter(key=key, cmp=cmp, val=val)
    raise InvalidFilter(f"unknown tags filter cmp {cmp!r}")
