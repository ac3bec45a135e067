"""The one JSON reader (server.web.jsonreader): what every front end accepts and refuses.
Every refusal is a MalformedJSON (kind malformed), never a RecursionError or another
exception the front ends would answer with a 500."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from server.errors import ErrorKind, MalformedJSON
from server.web.jsonreader import MAX_DEPTH, MAX_SAFE_INTEGER, read_json, read_json_object


def nested(levels: int, *, objects: bool = False) -> bytes:
    opening, closing = (b'{"a":', b"}") if objects else (b"[", b"]")
    return opening * levels + b"0" + closing * levels


ACCEPTED: list[Any] = [
    pytest.param(b"{}", {}, id="empty_object"),
    pytest.param(b' {"csr": "x", "profile": null} ', {"csr": "x", "profile": None}, id="object"),
    pytest.param(b'"text"', "text", id="string"),
    pytest.param(nested(MAX_DEPTH), json.loads(nested(MAX_DEPTH)), id="at_max_depth"),
    pytest.param(
        b"[" + nested(MAX_DEPTH - 1) + b"," + nested(MAX_DEPTH - 1, objects=True) + b"]",
        [json.loads(nested(MAX_DEPTH - 1)), json.loads(nested(MAX_DEPTH - 1, objects=True))],
        id="at_max_depth_with_more_brackets_than_levels",
    ),
    pytest.param(b"[" + b"[],[1]," * 2000 + b"[]]", [[], [1]] * 2000 + [[]], id="many_shallow"),
    pytest.param(
        json.dumps(["[[[{{{" * 100, '\\"[[[', "]]]"]).encode(),
        ["[[[{{{" * 100, '\\"[[[', "]]]"],
        id="brackets_inside_strings",
    ),
    pytest.param(b'"\\ud83d\\ude00"', "\U0001f600", id="surrogate_pair_escape"),
    pytest.param(str(MAX_SAFE_INTEGER).encode(), MAX_SAFE_INTEGER, id="max_safe_integer"),
    pytest.param(str(-MAX_SAFE_INTEGER).encode(), -MAX_SAFE_INTEGER, id="min_safe_integer"),
    pytest.param(b"[1.5e300, -0.0]", [1.5e300, -0.0], id="finite_floats"),
]


@pytest.mark.parametrize(("data", "value"), ACCEPTED)
def test_accepts(data: bytes, value: object) -> None:
    assert read_json(data) == value
    assert read_json(data.decode()) == value


REFUSED: list[Any] = [
    pytest.param(nested(MAX_DEPTH + 1), id="depth/one_too_many"),
    pytest.param(b"[" + nested(MAX_DEPTH) + b", []]", id="depth/one_too_many_with_siblings"),
    pytest.param(nested(1000), id="depth/1000_arrays"),
    pytest.param(nested(1000, objects=True), id="depth/1000_objects"),
    pytest.param(nested(25_000), id="depth/25000_arrays"),
    pytest.param(nested(25_000, objects=True), id="depth/25000_objects"),
    pytest.param(b"[" * 25_000, id="depth/25000_unclosed"),
    pytest.param(b"[{" * 500 + b"]}" * 500, id="depth/mismatched"),
    pytest.param(b'["' + b"[" * 100 + b'", ' + nested(100) + b"]", id="depth/after_a_string"),
    pytest.param(b"{", id="syntax/unclosed"),
    pytest.param(b"", id="syntax/empty"),
    pytest.param(b"{} {}", id="syntax/two_documents"),
    pytest.param("\u00e9t\u00e9".encode(), id="syntax/utf8_text"),
    pytest.param(b'{"a": NaN}', id="number/nan"),
    pytest.param(b"[Infinity]", id="number/infinity"),
    pytest.param(b"-Infinity", id="number/minus_infinity"),
    pytest.param(b"1e400", id="number/float_overflow"),
    pytest.param(str(MAX_SAFE_INTEGER + 1).encode(), id="number/beyond_2_53"),
    pytest.param(b"-" + str(MAX_SAFE_INTEGER + 1).encode(), id="number/below_minus_2_53"),
    pytest.param(b"1" + b"0" * 5000, id="number/5000_digits"),
    pytest.param(b'{"a": 1, "a": 2}', id="duplicate/member"),
    pytest.param(b'{"x": [{"b": 1, "b": 1}]}', id="duplicate/nested_member"),
    pytest.param(b'{"a": "\xe9"}', id="encoding/latin1"),
    pytest.param('{"a": "x"}'.encode("utf-16"), id="encoding/utf16"),
    pytest.param(b"\xef\xbb\xbf{}", id="encoding/bom"),
    pytest.param(b'"\xed\xa0\x80"', id="encoding/encoded_surrogate"),
    pytest.param(rb'{"a": "\ud800"}', id="surrogate/lone_high"),
    pytest.param(rb'["x\udc80y"]', id="surrogate/lone_low"),
    pytest.param(rb'{"\udfff": 1}', id="surrogate/in_a_name"),
    pytest.param(b" " * (2 << 20) + b"{}", id="size/over_max_bytes"),
]


@pytest.mark.parametrize("data", REFUSED)
def test_refuses(data: bytes) -> None:
    with pytest.raises(MalformedJSON) as info:
        read_json(data)
    assert info.value.kind is ErrorKind.MALFORMED


def test_a_str_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(MalformedJSON):
        read_json('{"a": "\udc80"}')


def test_the_limits_are_the_callers() -> None:
    assert read_json(nested(100), max_depth=101) == json.loads(nested(100))
    with pytest.raises(MalformedJSON):
        read_json(nested(3), max_depth=2)
    with pytest.raises(MalformedJSON):
        read_json(b'{"a": 1}', max_bytes=7)


@pytest.mark.parametrize("data", [b"[]", b'"x"', b"1", b"null", nested(3)])
def test_read_json_object_refuses_other_values(data: bytes) -> None:
    with pytest.raises(MalformedJSON, match="must be a JSON object"):
        read_json_object(data, what="the body")


def _random_value(rng: random.Random, depth: int) -> Any:
    """Values up to ``depth`` deep, with strings holding brackets, quotes and backslashes."""
    roll = rng.random()
    if depth == 0 or roll < 0.3:
        return rng.choice([0, 1.5, None, True, "", "[", "]{", '"[', "\\", '\\"]', "[[[x"])
    if roll < 0.65:
        return [_random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "[", "}", '"']): _random_value(rng, depth - 1) for _ in range(2)}


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


def test_the_depth_check_agrees_with_the_depth() -> None:
    """Seeded random documents around the bound: refused exactly when deeper than it."""
    rng = random.Random(20261202)  # noqa: S311 - replayable documents, not secrets
    outcomes = {True: 0, False: 0}
    for _ in range(3000):
        value = _random_value(rng, rng.randint(1, 12))
        text = json.dumps(value, indent=rng.choice([None, 1]))
        deeper = _depth(value) > 6
        try:
            assert read_json(text, max_depth=6) == value
            assert not deeper, text
        except MalformedJSON:
            assert deeper, text
        outcomes[deeper] += 1
    assert min(outcomes.values()) > 300, outcomes  # both sides of the bound were tried
