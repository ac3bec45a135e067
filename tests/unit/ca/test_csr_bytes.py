"""REST (and EST) take a CSR as DER exactly as sent: a DER request whose last byte
happens to be whitespace (0x09-0x0d, 0x20) must not be stripped and refused."""

from __future__ import annotations

import base64

from server.ca.csr import csr_der_from_bytes
from tests.unit.factories import make_csr


def test_der_ending_in_a_whitespace_byte_is_kept_whole() -> None:
    for i in range(2000):
        der = make_csr(f"h{i}.example.test")
        if der[-1:].isspace():
            assert csr_der_from_bytes(der) == der
            return
    raise AssertionError("no CSR ending in a whitespace byte in 2000 tries")


def test_pem_and_base64_with_line_breaks_give_the_der() -> None:
    der = make_csr("pem.example.test")
    b64 = base64.encodebytes(der)
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + b64 + b"-----END CERTIFICATE REQUEST-----\n"
    assert csr_der_from_bytes(pem) == der
    assert csr_der_from_bytes(b"\r\n" + b64 + b"\r\n") == der
