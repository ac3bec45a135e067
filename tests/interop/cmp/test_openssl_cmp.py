"""``openssl cmp`` (OpenSSL 3.x, the real client) against the CMP front end."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509

from tests.interop.cmp.conftest import CMPServer

PATH = ".well-known/cmp"


def new_key(path: Path) -> Path:
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    return path


async def enroll_ir(server: CMPServer, name: str = "dev1", *extra: str) -> tuple[int, str]:
    reference, secret, _ = await server.secrets.create()
    new_key(server.dir / f"{name}.key")
    return await server.openssl(
        "-cmd", "ir", "-path", PATH, "-ref", reference, "-secret", f"pass:{secret}",
        "-newkey", f"{name}.key", "-subject", f"/CN={name}", "-certout", f"{name}.pem",
        "-out_trusted", str(server.root_pem), *extra,
    )  # fmt: skip


async def test_ir_with_a_one_time_secret(cmp_server: CMPServer) -> None:
    code, out = await enroll_ir(cmp_server)
    assert code == 0, out
    # openssl checked the MAC of ip and pkiConf, and the new certificate against root.pem.
    assert "received PKICONF" in out
    cert = x509.load_pem_x509_certificate((cmp_server.dir / "dev1.pem").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=dev1"
