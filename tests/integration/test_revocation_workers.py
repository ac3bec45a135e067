"""Revocation with ``[server] workers = 2``: whichever worker an administrator's request
reaches, every worker serves the new CRL at once, and every worker's OCSP answer turns to
revoked within a second (``[ocsp] recheck_seconds``)."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tests.integration.revocation import cdp_url, issue, serial_of
from tests.integration.server import CertforgeServer

FRESH_CONNECTIONS = 20  # each a new connection, so the kernel spreads them over the workers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    srv = CertforgeServer(
        tmp_path_factory.mktemp("revocation-workers") / "data", extra_config="workers = 2\n"
    )
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def fetch(url: str, data: bytes | None = None) -> bytes:
    with urllib.request.urlopen(url, data=data, timeout=30) as resp:
        return bytes(resp.read())


def test_every_worker_serves_the_crl_published_by_one(
    server: CertforgeServer, tmp_path: Path
) -> None:
    serial, chain = issue(server, tmp_path, "workers-crl")
    server.cli("cert", "revoke", serial, "--reason", "keyCompromise", check=True)
    server.cli("crl", "publish", check=True)

    for _ in range(FRESH_CONNECTIONS):
        crl = x509.load_der_x509_crl(fetch(cdp_url(chain)))
        assert crl.get_revoked_certificate_by_serial_number(serial_of(chain)) is not None


def test_every_workers_ocsp_sees_a_revocation_within_a_second(
    server: CertforgeServer, tmp_path: Path
) -> None:
    serial, chain = issue(server, tmp_path, "workers-ocsp")
    leaf, issuer = x509.load_pem_x509_certificates(chain.read_bytes())[:2]
    sha1 = hashes.SHA1()  # noqa: S303 - the CertID hash clients send (RFC 5019)
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, sha1).build()
    der = request.public_bytes(Encoding.DER)

    def statuses() -> set[ocsp.OCSPCertStatus]:
        return {
            ocsp.load_der_ocsp_response(fetch(f"{server.http_url}/ocsp", der)).certificate_status
            for _ in range(FRESH_CONNECTIONS)
        }

    assert statuses() == {ocsp.OCSPCertStatus.GOOD}  # both workers have it cached as good
    server.cli("cert", "revoke", serial, "--reason", "keyCompromise", check=True)
    revoked_at = time.monotonic()
    while statuses() != {ocsp.OCSPCertStatus.REVOKED}:
        assert time.monotonic() - revoked_at < 2.0, "a worker still answers good"
    assert time.monotonic() - revoked_at < 2.0
