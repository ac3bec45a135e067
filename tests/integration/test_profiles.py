"""Each default profile's certificates, issued by the running server, pass ``openssl verify``
and ``pkilint`` with no errors (CA/B Forum linter for tls-server, RFC 5280 otherwise)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.openssl import make_csr, verify
from tests.integration.server import CertforgeServer

BIN = Path(sys.executable).parent

CASES = [
    pytest.param(
        "tls-server",
        "ec",
        "/CN=www.example.com",
        "DNS:www.example.com,IP:93.184.216.34",
        "sslserver",
        id="tls-server/ec-p256",
    ),
    pytest.param(
        "tls-server",
        "rsa2048",
        "/CN=rsa.example.com",
        "DNS:rsa.example.com",
        "sslserver",
        id="tls-server/rsa-2048",
    ),
    pytest.param(
        "tls-client",
        "ec",
        "/CN=alice/O=Example",
        "email:alice@example.com",
        "sslclient",
        id="tls-client/ec-p256",
    ),
    pytest.param("tls-client", "ED25519", "/CN=bob", "", "sslclient", id="tls-client/ed25519"),
    pytest.param("tls-client", "rsa3072", "/CN=carol", "", "sslclient", id="tls-client/rsa"),
    pytest.param(
        "device",
        "ec",
        "/CN=router-7/serialNumber=A1234",
        "DNS:router-7.example.com",
        "sslclient",
        id="device/ec-p256",
    ),
    pytest.param("device", "rsa2048", "/CN=switch-3", "", "sslclient", id="device/rsa-2048"),
]


@pytest.fixture(scope="module")
def lint_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    """A server whose certificates name a public CRL/AIA base URL, as a deployment's would
    (pkilint's CA/B Forum linter rightly refuses internal names such as 127.0.0.1)."""
    srv = CertforgeServer(
        tmp_path_factory.mktemp("lint") / "data", public_http_url="http://pki.example.com"
    )
    srv.start()
    yield srv
    assert srv.stop() == 0


def pkilint(tool: str, pem: Path, *args: str) -> list[str]:
    result = subprocess.run(
        [str(BIN / tool), "lint", *args, "-s", "ERROR", str(pem)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    findings = [line for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode in (0, 1), result.stderr
    return findings


@pytest.mark.parametrize(("profile", "key", "subject", "sans", "purpose"), CASES)
def test_profile_certificate_lints_clean(
    lint_server: CertforgeServer,
    work: Path,
    profile: str,
    key: str,
    subject: str,
    sans: str,
    purpose: str,
) -> None:
    server = lint_server
    token = server.cli("token", "create", f"lint-{profile}", check=True).stdout.strip()
    _, csr = make_csr(work, "leaf", subject=subject, sans=sans, key=key)
    out = server.cli(
        "request",
        "submit",
        str(csr),
        "--profile",
        profile,
        "--json",
        token=token,
        admin=False,
        check=True,
    )
    body = json.loads(out.stdout)
    assert body["status"] == "issued", body
    chain = work / "chain.pem"
    server.cli("request", "get", body["id"], "--out", str(chain), check=True)
    assert "OK" in verify(server.root, chain, purpose=purpose)
    leaf = chain.with_suffix(".leaf.pem")
    if profile == "tls-server":
        findings = pkilint("lint_cabf_serverauth_cert", leaf, "-t", "DV-FINAL-CERTIFICATE")
    else:
        findings = pkilint("lint_pkix_cert", leaf)
    assert findings == [], "\n".join(findings)
