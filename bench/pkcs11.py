"""Certificates signed per second with the issuing CA's key in SoftHSM2 against in memory.

    .venv/bin/python -m bench.pkcs11 [--rounds 7] [--certificates 200] [--key-types ...]

For each key type, one issuing CA whose key is in a SoftHSM2 token (a temporary one, as the
tests make it) and one with a software key of the same type, each with its certificate made
by certforge's own code (``server.ca.cacerts``). Each round builds and signs
``--certificates`` leaf certificates with ``server.ca.build.build_certificate`` (the
engine's signing step, nothing recorded) with the software key, then as many with the token
key; rounds alternate so that both see the same machine load. Reported: the median
certificates per second of each, and what the token adds per certificate in milliseconds.
One thread: the pool takes one call into the module at a time per process anyway.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from server.ca.build import build_certificate
from server.ca.cacerts import issuing_certificate, root_certificate
from server.ca.issuers import IssuingCA
from server.ca.keystore import CAKey, generate_key
from server.ca.pkcs11 import TokenPool, find_key
from server.ca.pkcs11 import generate_key as generate_token_key
from server.model import CertificateDraft, Identifier, IdentifierType
from tests.softhsm import softhsm_token

BASE_URL = "http://pki.example.com"
DRAFT = CertificateDraft(
    profile="tls-server",
    issuer="default",
    subject=(("2.5.4.3", "www.example.com"),),
    sans=(Identifier(IdentifierType.DNS, "www.example.com"),),
    validity=timedelta(days=90),
    key_type="ec-p256",
    key_usage=frozenset({"digitalSignature"}),
    extended_key_usage=("1.3.6.1.5.5.7.3.1",),
)


def issuer_with(key: CAKey, root_key: CAKey, now: datetime) -> IssuingCA:
    root = root_certificate(ca_name="Bench", key=root_key, now=now, validity_days=30)
    cert = issuing_certificate(
        ca_name="Bench",
        issuer_name="default",
        key=key,
        root=(root, root_key),
        base_url=BASE_URL,
        now=now,
        validity_days=30,
    )
    return IssuingCA.from_chain("default", chain=(cert,), key=key, root=root, base_url=BASE_URL)


def certificates_per_second(issuer: IssuingCA, count: int, now: datetime) -> float:
    subject = ec.generate_private_key(ec.SECP256R1()).public_key()
    start = time.perf_counter()
    for serial in range(1, count + 1):
        build_certificate(DRAFT, public_key=subject, issuer=issuer, serial=serial, now=now)
    return count / (time.perf_counter() - start)


def run(key_type: str, pool: TokenPool, rounds: int, count: int) -> dict[str, object]:
    now = datetime.now(UTC)
    software_key = generate_key(key_type)
    with pool.rw_session() as session:
        uri = generate_token_key(session, label=f"bench-{key_type}", key_type=key_type)
    token_key = find_key(pool, uri)
    software, token = (
        issuer_with(software_key, software_key, now),
        issuer_with(token_key, token_key, now),
    )
    certificates_per_second(software, count // 4 or 1, now)  # warm both paths up
    certificates_per_second(token, count // 4 or 1, now)
    soft_rates, token_rates = [], []
    for _ in range(rounds):
        soft_rates.append(certificates_per_second(software, count, now))
        token_rates.append(certificates_per_second(token, count, now))
    soft, hsm = statistics.median(soft_rates), statistics.median(token_rates)
    return {
        "key_type": key_type,
        "rounds": rounds,
        "certificates_per_round": count,
        "software_per_second": round(soft, 1),
        "softhsm_per_second": round(hsm, 1),
        "softhsm_extra_ms_per_certificate": round(1000 / hsm - 1000 / soft, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--certificates", type=int, default=200)
    parser.add_argument("--key-types", nargs="+", default=["ec-p256", "ec-p384", "rsa-2048"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="certforge-bench-pkcs11-") as directory:
        hsm = softhsm_token(Path(directory))
        pool = TokenPool(module=hsm.module, token_label=hsm.label, pin=hsm.pin)
        try:
            for key_type in args.key_types:
                print(json.dumps(run(key_type, pool, args.rounds, args.certificates)))
        finally:
            pool.close()


if __name__ == "__main__":
    main()
