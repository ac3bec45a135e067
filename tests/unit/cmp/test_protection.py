"""MAC protection (PasswordBasedMac, PBMAC1): round trips, openssl's MAC, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pyasn1_alt_modules import rfc5280

from protocols.cmp.failinfo import CMPFailure, FailInfo
from protocols.cmp.messages import read_message
from protocols.cmp.protection import (
    MACScheme,
    compute_mac,
    mac_algorithm,
    sign,
    signature_algorithm,
    verify_mac,
    verify_signature,
)

FIXTURE = Path(__file__).parents[2] / "testdata" / "cmp" / "openssl-3.0-ir-pbm.der"
DATA = b"the protected part"


def algorithm_identifier(oid: str, params: bytes | None) -> Any:
    alg = rfc5280.AlgorithmIdentifier()
    alg["algorithm"] = rfc5280.univ.ObjectIdentifier(oid)
    if params is not None:
        alg["parameters"] = params
    return alg


def protect(scheme: MACScheme, secret: bytes) -> tuple[Any, bytes]:
    oid, params, salt = mac_algorithm(scheme)
    return algorithm_identifier(oid, params), compute_mac(scheme, salt, secret, DATA)


PBM = MACScheme("pbm", "sha256", "sha256", 500)
PBMAC1 = MACScheme("pbmac1", "sha256", "sha256", 10_000)


@pytest.mark.parametrize("scheme", [PBM, PBMAC1], ids=["pbm", "pbmac1"])
def test_round_trip(scheme: MACScheme) -> None:
    alg, mac = protect(scheme, b"secret")
    assert verify_mac(alg, mac, b"secret", DATA) == scheme


@pytest.mark.parametrize("scheme", [PBM, PBMAC1], ids=["pbm", "pbmac1"])
def test_wrong_secret_is_bad_message_check(scheme: MACScheme) -> None:
    alg, mac = protect(scheme, b"secret")
    with pytest.raises(CMPFailure) as exc:
        verify_mac(alg, mac, b"other", DATA)
    assert exc.value.fail_info is FailInfo.BAD_MESSAGE_CHECK


def test_openssl_password_based_mac_verifies() -> None:
    msg = read_message(FIXTURE.read_bytes())
    assert msg.protection is not None
    scheme = verify_mac(msg.header.protection_alg, msg.protection, b"s3cret", msg.protected_part)
    assert scheme == MACScheme("pbm", "sha256", "sha1", 500)
    with pytest.raises(CMPFailure):
        verify_mac(msg.header.protection_alg, msg.protection, b"s3cre7", msg.protected_part)


@pytest.mark.parametrize(
    "scheme",
    [
        pytest.param(MACScheme("pbm", "sha256", "sha256", 10**9), id="pbm/huge_iteration_count"),
        pytest.param(MACScheme("pbm", "sha256", "sha256", 99), id="pbm/under_rfc9045_minimum"),
        pytest.param(MACScheme("pbmac1", "sha256", "sha256", 10**8), id="pbmac1/huge_count"),
    ],
)
def test_iteration_counts_are_bounded(scheme: MACScheme) -> None:
    # Refused before any hashing: the MAC is not even computed.
    oid, params, _ = mac_algorithm(scheme)
    alg = algorithm_identifier(oid, params)
    with pytest.raises(CMPFailure) as exc:
        verify_mac(alg, b"\x00" * 32, b"secret", DATA)
    assert exc.value.fail_info is FailInfo.BAD_ALG


def test_unknown_mac_algorithm_is_bad_alg() -> None:
    with pytest.raises(CMPFailure) as exc:
        verify_mac(algorithm_identifier("1.2.3.4", b"\x05\x00"), b"", b"s", DATA)
    assert exc.value.fail_info is FailInfo.BAD_ALG


def test_malformed_parameters_are_bad_alg() -> None:
    oid, params, _ = mac_algorithm(PBM)
    with pytest.raises(CMPFailure) as exc:
        verify_mac(algorithm_identifier(oid, params[:-3]), b"", b"s", DATA)
    assert exc.value.fail_info is FailInfo.BAD_ALG


def self_signed(key: ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2027, 1, 1, tzinfo=UTC))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def test_signature_round_trip_and_tamper() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key)
    alg = algorithm_identifier(signature_algorithm(key), None)
    signature = sign(key, DATA)
    verify_signature(alg, signature, cert, DATA)
    with pytest.raises(CMPFailure) as exc:
        verify_signature(alg, signature, cert, DATA + b"!")
    assert exc.value.fail_info is FailInfo.BAD_MESSAGE_CHECK
