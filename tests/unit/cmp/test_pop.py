"""Proof of possession: openssl's CRMF signature POP, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pyasn1_alt_modules import rfc4211

from protocols.cmp.certreq import parsed_request
from protocols.cmp.failinfo import CMPFailure, FailInfo
from protocols.cmp.messages import read_message
from protocols.cmp.pop import verify_crmf_pop, verify_p10_pop
from tests.unit.factories import make_csr

FIXTURE = Path(__file__).parents[2] / "testdata" / "cmp" / "openssl-3.0-ir-pbm.der"


def cert_req_msg() -> object:
    return read_message(FIXTURE.read_bytes()).body[0]


def test_openssl_signature_pop_verifies_and_becomes_a_request() -> None:
    msg = cert_req_msg()
    algorithm, signature = verify_crmf_pop(msg)
    assert algorithm == "1.2.840.10045.4.3.2"
    parsed = parsed_request(
        msg["certReq"]["certTemplate"],  # type: ignore[index]
        pop_algorithm=algorithm,
        pop_signature=signature,
    )
    assert (parsed.subject_text, parsed.key_type, parsed.sans) == ("CN=dev1", "ec-p256", ())
    assert parsed.csr.public_key() == parsed.public_key


def test_a_signature_over_something_else_is_bad_pop() -> None:
    msg = cert_req_msg()
    msg["certReq"]["certReqId"] = 1  # type: ignore[index]
    with pytest.raises(CMPFailure) as exc:
        verify_crmf_pop(msg)
    assert exc.value.fail_info is FailInfo.BAD_POP


def test_ra_verified_is_refused() -> None:
    msg = cert_req_msg()
    msg["popo"]["raVerified"] = ""  # type: ignore[index]
    with pytest.raises(CMPFailure) as exc:
        verify_crmf_pop(msg)
    assert exc.value.fail_info is FailInfo.BAD_POP


def test_missing_pop_is_refused() -> None:
    msg = rfc4211.CertReqMsg()
    msg["certReq"] = cert_req_msg()["certReq"]  # type: ignore[index]
    with pytest.raises(CMPFailure) as exc:
        verify_crmf_pop(msg)
    assert exc.value.fail_info is FailInfo.BAD_POP


def test_p10_signature() -> None:
    der = make_csr("p10.example.test", key=ec.generate_private_key(ec.SECP256R1()))
    verify_p10_pop(der)
    tampered = der[:-2] + bytes([der[-2] ^ 1]) + der[-1:]
    with pytest.raises(CMPFailure) as exc:
        verify_p10_pop(tampered)
    assert exc.value.fail_info in (FailInfo.BAD_POP, FailInfo.BAD_DATA_FORMAT)
