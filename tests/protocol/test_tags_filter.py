"""Tags filters: parsing (bad input is InvalidFilter) and evaluation, with the SDK's builders."""

from __future__ import annotations

from typing import Any

import pytest
from centrifuge.filter import Filter

from fastapi_realtime.protocol.tags_filter import InvalidFilter, TagsFilter, parse

TAGS = {"ticker": "AAPL", "price": "120.5", "source": "NASDAQ", "empty": ""}


def check(node: Any, tags: dict[str, str] | None = TAGS) -> bool:
    return parse(node.node if hasattr(node, "node") else node, max_nodes=64).matches(tags)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (Filter.eq("ticker", "AAPL"), True),
        (Filter.eq("ticker", "MSFT"), False),
        (Filter.eq("missing", "x"), False),
        (Filter.eq("empty", ""), True),
        (Filter.neq("ticker", "MSFT"), True),
        (Filter.neq("ticker", "AAPL"), False),
        (Filter.neq("missing", "x"), True),
        (Filter.is_in("source", ["NYSE", "NASDAQ"]), True),
        (Filter.is_in("source", ["NYSE"]), False),
        (Filter.is_in("missing", ["NYSE"]), False),
        (Filter.not_in("source", ["NYSE"]), True),
        (Filter.not_in("source", ["NASDAQ"]), False),
        (Filter.not_in("missing", ["NYSE"]), True),
        (Filter.exists("ticker"), True),
        (Filter.exists("missing"), False),
        (Filter.not_exists("missing"), True),
        (Filter.not_exists("ticker"), False),
        (Filter.starts_with("ticker", "AA"), True),
        (Filter.starts_with("ticker", "PL"), False),
        (Filter.ends_with("ticker", "PL"), True),
        (Filter.contains("source", "SDA"), True),
        (Filter.contains("missing", ""), False),
        (Filter.gt("price", "100"), True),
        (Filter.gt("price", "120.5"), False),
        (Filter.gte("price", "120.5"), True),
        (Filter.lt("price", "1e3"), True),
        (Filter.lte("price", "120"), False),
        (Filter.gt("ticker", "1"), False),  # not a number: no match
        (Filter.gt("missing", "1"), False),
        (Filter.all(Filter.eq("ticker", "AAPL"), Filter.gte("price", "100")), True),
        (Filter.all(Filter.eq("ticker", "AAPL"), Filter.gte("price", "200")), False),
        (Filter.all(), True),
        (Filter.any(Filter.eq("ticker", "X"), Filter.eq("source", "NASDAQ")), True),
        (Filter.any(Filter.eq("ticker", "X"), Filter.eq("source", "X")), False),
        (Filter.any(), False),
        (Filter.negate(Filter.eq("source", "NYSE")), True),
        (Filter.negate(Filter.all(Filter.exists("ticker"), Filter.negate(Filter.exists("x")))), False),
    ],
)
def test_sdk_built_filters(node: Any, expected: bool) -> None:
    assert check(node) is expected


def test_publication_without_tags() -> None:
    assert check(Filter.not_exists("a"), None) is True
    assert check(Filter.eq("a", "b"), None) is False
    assert check(Filter.eq("a", "b"), {}) is False


@pytest.mark.parametrize(
    "node",
    [
        [],
        "eq",
        {},
        {"op": "xor", "nodes": []},
        {"op": "and", "nodes": {}},
        {"op": "not", "nodes": []},
        {"op": "not", "nodes": [{"key": "a", "cmp": "ex"}, {"key": "b", "cmp": "ex"}]},
        {"key": "a"},
        {"key": "", "cmp": "eq"},
        {"key": 1, "cmp": "eq"},
        {"key": "a", "cmp": "like", "val": "x"},
        {"key": "a", "cmp": "eq", "val": 1},
        {"key": "a", "cmp": "in"},
        {"key": "a", "cmp": "in", "vals": "abc"},
        {"key": "a", "cmp": "in", "vals": [1]},
        {"key": "a", "cmp": "gt", "val": "abc"},
        {"key": "a", "cmp": "gt", "val": "nan"},
        {"op": "and", "nodes": [{"key": "a", "cmp": "ex"}, 5]},
    ],
)
def test_malformed_filters_are_refused(node: Any) -> None:
    with pytest.raises(InvalidFilter):
        parse(node, max_nodes=64)


def test_node_limit() -> None:
    wide = {"op": "or", "nodes": [{"key": "a", "cmp": "eq", "val": str(i)} for i in range(9)]}
    assert isinstance(parse(wide, max_nodes=10), TagsFilter)
    with pytest.raises(InvalidFilter, match="too many"):
        parse(wide, max_nodes=9)
    deep: dict[str, Any] = {"key": "a", "cmp": "ex"}
    for _ in range(100):
        deep = {"op": "not", "nodes": [deep]}
    with pytest.raises(InvalidFilter, match="too many"):
        parse(deep, max_nodes=64)
