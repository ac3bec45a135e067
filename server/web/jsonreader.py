"""The one reader of JSON from clients, for every front end (RFC 8259, with I-JSON's limits,
RFC 7493).

``read_json`` takes the bytes a client sent (a request body, a base64url-decoded JWS header
or payload) and returns the value, or raises ``MalformedJSON``, a ``Malformed``: each front
end's error table already maps it to its own malformed-request answer (an ACME ``malformed``
problem, a REST or admin problem document with 400). Nothing else escapes, so bad JSON is
never a 5xx and never an error in the log.

It refuses, beyond what ``json.loads`` refuses:

* a document larger than ``max_bytes``, or nesting arrays and objects deeper than
  ``max_depth``: Python's decoder recurses once per level, and about a thousand levels (2 kB
  of ``[``) raise RecursionError;
* bytes that are not UTF-8 (RFC 8259 §8.1: JSON exchanged between systems "MUST be encoded
  using UTF-8"), and escapes of lone surrogates (``"\\ud800"``), which no UTF-8 text holds and
  which the stores cannot encode;
* NaN and Infinity (not JSON, though ``json.loads`` takes them), numbers that overflow a
  double (``1e400``), and integers beyond ±(2**53 - 1) (RFC 7493 §2.2): Python would turn
  them into integers of any size, refused (past 4,300 digits) or overflowing wherever
  they are used;
* an object with a member name twice (RFC 7493 §2.3 "MUST NOT"; for a JOSE header RFC
  7515 §4 requires rejecting it or taking the last, and taking either silently lets two
  parsers read one header differently).

It deliberately does not know any protocol's shapes: ``read_json_object`` only requires the
top level to be an object, the caller checks the members.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from server.errors import MalformedJSON

# Deeper than any document a certforge client sends (an ACME newOrder payload is three levels:
# the payload, its identifiers, each identifier), far below the decoder's recursion limit.
MAX_DEPTH = 32
# Request bodies are bounded before they are read (server.max_body_bytes, 64 kB by default);
# this bounds every JSON document whatever its origin, with room for a raised body limit.
MAX_BYTES = 1 << 20
MAX_SAFE_INTEGER = 2**53 - 1  # RFC 7493 §2.2: the integers a double holds exactly

# A JSON string with its escapes (the unrolled loop: no backtracking, and the literal first
# quote lets the regex engine skip ahead to the next one).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# One bytes.translate: brackets kept (braces as brackets: only the nesting counts), every
# other byte deleted; a UTF-8 multi-byte character has no byte below 0x80 to keep.
_TO_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class _Refused(ValueError):
    """Raised by the decoder's hooks; ``read_json`` turns it into MalformedJSON."""


def read_json(
    data: bytes | str,
    *,
    what: str = "the body",
    max_depth: int = MAX_DEPTH,
    max_bytes: int = MAX_BYTES,
) -> Any:
    """The JSON value in ``data``; ``what`` names it in the client's error message."""
    if len(data) > max_bytes:
        raise MalformedJSON(f"{what} is larger than {max_bytes} bytes")
    try:
        text = data.decode() if isinstance(data, bytes) else data
        if isinstance(data, str):
            data.encode()  # a str may hold lone surrogates outright
    except UnicodeError:
        raise MalformedJSON(f"{what} is not UTF-8") from None
    _check_depth(text, what, max_depth)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_integer,
            parse_float=_float,
            parse_constant=_constant,
        )
    except _Refused as exc:
        raise MalformedJSON(f"{what} has {exc}") from None
    # RecursionError too: the depth check above keeps the decoder far from the limit, and
    # were it ever reached (a caller's larger max_depth), it is still the client's input.
    except (ValueError, RecursionError):
        raise MalformedJSON(f"{what} is not JSON") from None
    if _SURROGATE_ESCAPE.search(text) and not _encodes(value):
        raise MalformedJSON(f"{what} has an escaped lone surrogate (not Unicode text)")
    return value


def read_json_object(data: bytes | str, *, what: str = "the body", **limits: int) -> dict[str, Any]:
    """Like ``read_json``, for a document that must be a JSON object."""
    value = read_json(data, what=what, **limits)
    if not isinstance(value, dict):
        raise MalformedJSON(f"{what} must be a JSON object")
    return value


def _check_depth(text: str, what: str, max_depth: int) -> None:
    """Refuse more than ``max_depth`` levels of arrays and objects, without recursing and
    without a Python loop over the characters.

    A document with no more opening brackets than ``max_depth`` cannot nest deeper (every
    common body: a JWS has one). Otherwise the bracket skeleton (strings removed) loses its
    innermost pairs, one level per ``str.replace``: after ``max_depth`` rounds a well-formed
    document has nothing left. What remains is deeper, or unbalanced: not JSON either way."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    skeleton = _STRING.sub("", text).encode().translate(_TO_BRACKETS, _NOT_BRACKETS)
    for _ in range(max_depth):
        inner = skeleton.replace(b"[]", b"")
        if len(inner) == len(skeleton):
            break
        skeleton = inner
    if skeleton:
        raise MalformedJSON(f"{what} nests arrays and objects more than {max_depth} deep")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Refused(f"the member {_repeated(pairs)[:64]!r} twice in one object")
    return obj


def _repeated(pairs: list[tuple[str, Any]]) -> str:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            return name
        seen.add(name)
    raise AssertionError("no member name repeats")


def _integer(text: str) -> int:
    # The length test first: int() of thousands of digits is slow, then refused.
    if len(text) > len(str(-MAX_SAFE_INTEGER)) or abs(value := int(text)) > MAX_SAFE_INTEGER:
        raise _Refused("an integer beyond ±(2**53 - 1)")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("a number too large for a double")
    return value


def _constant(text: str) -> NoReturn:
    raise _Refused(f"{text}, which is not a JSON number")


def _encodes(value: Any) -> bool:
    """Whether the decoded value is Unicode text throughout (no lone surrogate)."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True
