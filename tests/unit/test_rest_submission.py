"""The REST front end's reading of a submitted CSR body (DER, PEM or base64)."""

from __future__ import annotations

import base64

from protocols.rest.handlers import _csr_bytes
from tests.unit.factories import make_csr


def der_ending_in_whitespace() -> bytes:
    """A DER request whose last octet is one ``bytes.strip`` removes (about 1 in 40 are)."""
    for i in range(5000):
        der = make_csr(f"ws{i}.example.test")
        if der[-1:].isspace():
            return der
    raise AssertionError("no CSR ended in a whitespace octet")


def test_der_is_taken_as_sent_even_when_it_ends_in_a_whitespace_octet() -> None:
    der = der_ending_in_whitespace()
    assert _csr_bytes(der) == der


def test_pem_and_base64_with_line_breaks_give_the_der() -> None:
    der = make_csr("pem.example.test")
    b64 = base64.encodebytes(der)
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + b64 + b"-----END CERTIFICATE REQUEST-----\n"
    assert _csr_bytes(pem) == der
    assert _csr_bytes(b"\r\n" + b64 + b"\r\n") == der
