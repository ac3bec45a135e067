"""Several issuing CAs: each profile names the one that signs, and each chain verifies to the
one root. Also: a passphrase encrypts the CA keys at rest, and a wrong one stops the start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.openssl import make_csr, verify
from tests.integration.server import CertforgeServer, run

TWO_ISSUERS = """
[ca]
key_type = "ec-p384"
passphrase_env = "CERTFORGE_TEST_PASSPHRASE"

[[ca.issuers]]
name = "default"

[[ca.issuers]]
name = "devices"
key_type = "rsa-2048"

[profiles.device]
issuer = "devices"
"""


def test_profiles_choose_their_issuing_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CERTFORGE_TEST_PASSPHRASE", "correct horse")
    server = CertforgeServer(tmp_path / "data", extra_config=TWO_ISSUERS)
    server.start()
    try:
        token = server.cli("token", "create", "issuers", check=True).stdout.strip()
        for profile, issuer_cn, key_alg in (
            ("tls-server", "default", "ecdsa"),
            ("device", "devices", "rsaEncryption"),
        ):
            _, csr = make_csr(
                tmp_path,
                profile,
                subject=f"/CN={profile}.example.com",
                sans=f"DNS:{profile}.example.com",
            )
            body = json.loads(
                server.cli(
                    "request",
                    "submit",
                    str(csr),
                    "--profile",
                    profile,
                    "--json",
                    token=token,
                    admin=False,
                    check=True,
                ).stdout
            )
            chain = tmp_path / f"{profile}.pem"
            server.cli("request", "get", body["id"], "--out", str(chain), check=True)
            assert "OK" in verify(server.root, chain)
            ca = chain.with_suffix(".ca.pem")
            text = run("openssl", "x509", "-in", str(ca), "-noout", "-text").stdout
            assert f"{issuer_cn} Issuing CA" in text
            assert key_alg in text
        key = (server.data_dir / "ca" / "devices.key.pem").read_text()
        assert "ENCRYPTED PRIVATE KEY" in key
    finally:
        assert server.stop() == 0

    # A wrong passphrase stops the start (exit 1) with a reason, never a traceback.
    monkeypatch.setenv("CERTFORGE_TEST_PASSPHRASE", "wrong")
    with pytest.raises(RuntimeError, match="exited with 1") as refused:
        server.start(timeout=30)
    assert "passphrase" in str(refused.value).lower()
    assert "Traceback" not in str(refused.value)
