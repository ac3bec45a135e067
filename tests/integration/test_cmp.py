"""CMP (RFC 9483) wired into the real server by its entry point: ``openssl cmp`` enrolls
with a one-time secret from ``certforge cmp secret`` at ``/.well-known/cmp`` on the HTTP
listener and verifies the answer and the new certificate against the data directory's
``root.pem``."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from cryptography import x509

from tests.integration.server import CertforgeServer


def test_ir_with_a_secret_from_the_command_line(server: CertforgeServer, work: Path) -> None:
    out = server.cli("cmp", "secret", check=True).stdout
    reference, secret = out.split()  # the contract: REFERENCE SECRET on one line
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", "dev.key"],
        cwd=work, check=True, capture_output=True,
    )  # fmt: skip
    result = subprocess.run(
        ["openssl", "cmp", "-cmd", "ir",
         "-server", f"http://127.0.0.1:{server.http_port}/.well-known/cmp",
         "-ref", reference, "-secret", f"pass:{secret}", "-newkey", "dev.key",
         "-subject", "/CN=cmp-dev.example.test", "-certout", "dev.pem",
         "-out_trusted", str(server.root)],
        cwd=work, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    cert = x509.load_pem_x509_certificate((work / "dev.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=cmp-dev.example.test"
    # The secret was used up: the same ir again is refused.
    again = subprocess.run(
        ["openssl", "cmp", "-cmd", "ir",
         "-server", f"http://127.0.0.1:{server.http_port}/.well-known/cmp",
         "-ref", reference, "-secret", f"pass:{secret}", "-newkey", "dev.key",
         "-subject", "/CN=cmp-dev.example.test", "-certout", "again.pem",
         "-out_trusted", str(server.root)],
        cwd=work, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert again.returncode != 0


def test_the_master_key_is_private(server: CertforgeServer) -> None:
    key = server.data_dir / "cmp" / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
