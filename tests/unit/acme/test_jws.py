"""The sans-I/O JWS layer (RFC 8555 §6.2): each defect raises the RFC's problem type."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from protocols.acme.jws import (
    b64decode,
    eab_verify,
    parse_jwk,
    parse_jws,
    thumbprint_of,
    verify_signature,
)
from protocols.acme.problems import ACMEProblem, ProblemType, problem_of
from server.errors import CertforgeError
from tests.interop.acme.client import b64, eab_binding, jwk_of, jws, thumbprint

KEY = ec.generate_private_key(ec.SECP256R1())
HEADER = {"nonce": "n", "url": "https://ca.example/acme/new-account"}


def good() -> dict[str, str]:
    return jws(KEY, HEADER | {"jwk": jwk_of(KEY)}, b"{}")


def with_(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = dict(good())
    body.update(changes)
    return body


BAD_BODIES: list[Any] = [
    pytest.param(b"not json", ProblemType.MALFORMED, id="body/not_json"),
    pytest.param(b"[]", ProblemType.MALFORMED, id="body/not_object"),
    pytest.param(with_(signatures=[]), ProblemType.MALFORMED, id="body/multiple_signatures"),
    pytest.param(with_(header={}), ProblemType.MALFORMED, id="body/unprotected_header"),
    pytest.param(
        {"protected": "e30", "payload": ""}, ProblemType.MALFORMED, id="body/no_signature"
    ),
    pytest.param(with_(protected="!!"), ProblemType.MALFORMED, id="body/protected_not_base64url"),
    pytest.param(
        with_(protected=b64(b"[1]")), ProblemType.MALFORMED, id="body/protected_not_object"
    ),
    pytest.param(with_(payload="e30="), ProblemType.MALFORMED, id="body/padded_base64"),
    pytest.param(
        with_(protected=b64(json.dumps({"alg": "ES256", "b64": False}).encode())),
        ProblemType.MALFORMED,
        id="body/unencoded_payload",
    ),
]


@pytest.mark.parametrize(("body", "problem"), BAD_BODIES)
def test_parse_jws_refuses(body: Any, problem: ProblemType) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert refusal(lambda: parse_jws(raw)).type is problem


def refusal(parse: Callable[[], object]) -> ACMEProblem:
    """The problem a parse raises: its own, or an engine error through ACME's table (the JSON
    reader raises MalformedJSON, which the problem middleware maps so)."""
    try:
        parse()
    except ACMEProblem as problem:
        return problem
    except CertforgeError as exc:
        return problem_of(exc)
    raise AssertionError("the parse did not refuse")


def deep(levels: int, *, objects: bool = False) -> bytes:
    opening, closing = (b'{"a":', b"}") if objects else (b"[", b"]")
    return opening * levels + b"0" + closing * levels


@pytest.mark.parametrize(
    "protected",
    [
        pytest.param(b'{"alg": "ES256", "deep": ' + deep(1000) + b"}", id="nested_1000_arrays"),
        pytest.param(
            b'{"alg": "ES256", "deep": ' + deep(25_000, objects=True) + b"}",
            id="nested_25000_objects",
        ),
        pytest.param(b'{"alg": "ES256", "alg": "none"}', id="duplicate_member"),
        pytest.param(b'{"alg": "ES256", "n": NaN}', id="nan"),
        pytest.param(b'{"alg": "ES256", "n": 1' + b"0" * 5000 + b"}", id="huge_integer"),
        pytest.param(rb'{"alg": "ES\udc80"}', id="lone_surrogate"),
        pytest.param(b'{"alg": "\xff"}', id="not_utf8"),
    ],
)
def test_protected_header_is_read_by_the_json_reader(protected: bytes) -> None:
    body = json.dumps(with_(protected=b64(protected))).encode()
    assert refusal(lambda: parse_jws(body)).type is ProblemType.MALFORMED


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(deep(1000), id="nested_1000_arrays"),
        pytest.param(deep(25_000, objects=True), id="nested_25000_objects"),
        pytest.param(b"[]", id="not_object"),
        pytest.param(b'{"contact": [], "contact": ["mailto:a@example.com"]}', id="duplicate"),
    ],
)
def test_payload_is_read_by_the_json_reader(payload: bytes) -> None:
    parsed = parse_jws(json.dumps(jws(KEY, HEADER | {"jwk": jwk_of(KEY)}, payload)).encode())
    assert refusal(parsed.payload_json).type is ProblemType.MALFORMED


KEYS: list[Any] = [
    pytest.param(lambda: ec.generate_private_key(ec.SECP256R1()), id="ES256"),
    pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="ES384"),
    pytest.param(lambda: rsa.generate_private_key(65537, 2048), id="RS256"),
    pytest.param(lambda: ed25519.Ed25519PrivateKey.generate(), id="EdDSA"),
]


@pytest.mark.parametrize("make_key", KEYS)
def test_signature_verifies_and_tampering_fails(make_key: Callable[[], Any]) -> None:
    key = make_key()
    body = jws(key, HEADER | {"jwk": jwk_of(key)}, b'{"a": 1}')
    parsed = parse_jws(json.dumps(body).encode())
    account_key = parse_jwk(parsed.protected["jwk"])
    verify_signature(parsed, account_key)
    tampered = parse_jws(json.dumps(body | {"payload": b64(b'{"a": 2}')}).encode())
    with pytest.raises(ACMEProblem) as info:
        verify_signature(tampered, account_key)
    assert info.value.type is ProblemType.MALFORMED


@pytest.mark.parametrize(
    ("alg", "problem"),
    [
        pytest.param("none", ProblemType.BAD_SIGNATURE_ALGORITHM, id="alg/none"),
        pytest.param("HS256", ProblemType.BAD_SIGNATURE_ALGORITHM, id="alg/mac"),
        pytest.param("RS256", ProblemType.BAD_SIGNATURE_ALGORITHM, id="alg/not_the_keys"),
        pytest.param("ES384", ProblemType.BAD_SIGNATURE_ALGORITHM, id="alg/wrong_curve"),
    ],
)
def test_algorithm_refused(alg: str, problem: ProblemType) -> None:
    body = with_(protected=b64(json.dumps(HEADER | {"alg": alg}).encode()))
    parsed = parse_jws(json.dumps(body).encode())
    with pytest.raises(ACMEProblem) as info:
        verify_signature(parsed, parse_jwk(jwk_of(KEY)))
    assert info.value.type is problem


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param({"kty": "oct", "k": "c2VjcmV0"}, id="jwk/symmetric"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, id="jwk/not_on_curve"),
        pytest.param({"kty": "OKP", "crv": "X25519", "x": "AA"}, id="jwk/x25519"),
        pytest.param(jwk_of(rsa.generate_private_key(65537, 1024)), id="jwk/short_rsa"),
        pytest.param(jwk_of(KEY) | {"d": "AA"}, id="jwk/private"),
        pytest.param({"kty": "RSA", "n": 5, "e": "AQAB"}, id="jwk/member_not_string"),
        pytest.param({"kty": "EC", "crv": "P-256", "x": None, "y": "AA"}, id="jwk/ec_not_string"),
        pytest.param("a string", id="jwk/not_object"),
    ],
)
def test_bad_account_keys(jwk: Any) -> None:
    with pytest.raises(ACMEProblem) as info:
        parse_jwk(jwk)
    assert info.value.type in (ProblemType.BAD_PUBLIC_KEY, ProblemType.MALFORMED)


def test_thumbprint_is_rfc7638() -> None:
    # RFC 7638 §3.1's example key and thumbprint.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
            "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4"
            "QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbO"
            "pbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
            "Cur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
    }
    assert parse_jwk(jwk).thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("make_key", KEYS)
def test_thumbprint_of_a_public_key_is_the_accounts(make_key: Callable[[], Any]) -> None:
    """finalize finds an account by the CSR key's thumbprint: it must be the one the account
    was stored under, whatever the key type."""
    key = make_key()
    assert thumbprint_of(key.public_key()) == parse_jwk(jwk_of(key)).thumbprint


def test_no_thumbprint_for_a_key_no_account_can_have() -> None:
    assert thumbprint_of(x25519.X25519PrivateKey.generate().public_key()) is None


def test_eab_mac() -> None:
    binding = eab_binding("kid-1", b64(b"k" * 32), KEY, HEADER["url"])
    parsed = parse_jws(json.dumps(binding).encode())
    eab_verify(parsed, b"k" * 32)
    with pytest.raises(ACMEProblem) as info:
        eab_verify(parsed, b"x" * 32)
    assert info.value.type is ProblemType.UNAUTHORIZED


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("e30=", id="padded"),
        pytest.param("e3!0", id="outside_the_alphabet"),
        pytest.param("e3 0", id="space"),
        pytest.param("e30\n", id="line_break"),
        pytest.param("e+0/", id="base64_not_base64url"),
        pytest.param("e31", id="unused_bits_set"),
        pytest.param("AAAAB", id="one_char_past_a_block"),
        pytest.param(b"e30", id="not_a_string"),
    ],
)
def test_b64decode_refuses_every_other_spelling(text: object) -> None:
    """RFC 7515 §2: unpadded base64url and nothing else; the last character's unused bits
    are zero, so each octet string has one spelling."""
    with pytest.raises(ACMEProblem) as info:
        b64decode(text, "the value")
    assert info.value.type is ProblemType.MALFORMED


@pytest.mark.parametrize("data", [b"", b"{}", b"\xff\xfe", bytes(range(40))])
def test_b64decode_takes_the_canonical_spelling(data: bytes) -> None:
    assert b64decode(b64(data), "the value") == data


def _respelled(text: str) -> list[str]:
    """``text`` (base64url) with characters a lax decoder skips, and with the last
    character's unused bits set when it has any."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spelled = [text[:4] + "!!" + text[4:], text + "\n"]
    unused = (1 << (len(text) * 6 % 8)) - 1  # the bits past the last whole octet
    last = alphabet.index(text[-1])
    return spelled + [text[:-1] + alphabet[last | bits] for bits in range(1, unused + 1)]


MEMBERS: list[Any] = [
    pytest.param(KEYS[0].values[0], member, id=f"{KEYS[0].id}/{member}") for member in ("x", "y")
]
MEMBERS += [pytest.param(KEYS[2].values[0], m, id=f"RS256/{m}") for m in ("n", "e")]
MEMBERS += [pytest.param(KEYS[3].values[0], "x", id="EdDSA/x")]


@pytest.mark.parametrize(("make_key", "member"), MEMBERS)
def test_a_jwk_member_spelled_otherwise_is_refused(
    make_key: Callable[[], Any], member: str
) -> None:
    """One key, one thumbprint (RFC 7638): a member re-spelled is not another key; it was
    for Ed25519, whose thumbprint was taken over "x" as sent."""
    jwk = jwk_of(make_key())
    spellings = _respelled(jwk[member])
    for spelled in spellings:
        with pytest.raises(ACMEProblem) as info:
            parse_jwk(jwk | {member: spelled})
        assert info.value.type in (ProblemType.MALFORMED, ProblemType.BAD_PUBLIC_KEY), spelled


def test_rsa_leading_zero_octets_are_the_same_key() -> None:
    """RFC 7518 §6.3.1.1: some libraries prefix a zero octet to "n"; the key, its JWK and
    its thumbprint are those of the canonical encoding."""
    jwk = jwk_of(rsa.generate_private_key(65537, 2048))
    canonical = parse_jwk(jwk)
    n = b64decode(jwk["n"], "n")
    padded = parse_jwk(jwk | {"n": b64(b"\0" + n), "e": b64(b"\0\0\1\0\1")})
    assert padded.thumbprint == canonical.thumbprint
    assert padded.jwk == canonical.jwk == jwk


def test_ec_coordinates_must_have_the_curve_size() -> None:
    jwk = jwk_of(KEY)
    x = b64decode(jwk["x"], "x")
    with pytest.raises(ACMEProblem) as info:
        parse_jwk(jwk | {"x": b64(b"\0" + x)})
    assert info.value.type is ProblemType.BAD_PUBLIC_KEY


@pytest.mark.parametrize("make_key", KEYS)
def test_the_thumbprint_is_the_clients(make_key: Callable[[], Any]) -> None:
    key = make_key()
    assert parse_jwk(jwk_of(key)).thumbprint == thumbprint(key)
