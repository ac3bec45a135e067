"""EST from the outside: curl and openssl commands, as an administrator would type them.

There is no EST client code of ours here: every request is ``curl``; every key, request and
check is ``openssl``. This module only runs them and keeps the files.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.integration.server import CertforgeServer, run


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lowercased names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def pkcs7_certs(self, work: Path, name: str) -> Path:
        """The certs-only body, base64-decoded and printed by ``openssl pkcs7``, as PEM."""
        assert self.status == 200, (self.status, self.text)
        der = work / f"{name}.p7b"
        der.write_bytes(base64.b64decode(self.body))
        pem = work / f"{name}.pem"
        run("openssl", "pkcs7", "-inform", "DER", "-in", str(der), "-print_certs", "-out", str(pem))
        return pem


def curl(
    server: CertforgeServer,
    path: str,
    *args: str,
    body: Path | None = None,
    content_type: str = "application/pkcs10",
) -> Answer:
    """One request with curl; ``path`` is below /.well-known/est/."""
    cmd = ["curl", "-sS", "--cacert", str(server.root), "-D", "-", "-o", "-"]
    if body is not None:
        cmd += ["-H", f"Content-Type: {content_type}", "--data-binary", f"@{body}"]
    cmd += [*args, f"{server.url}/.well-known/est/{path}"]
    result = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()
    head, _, payload = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(lines[0].split()[1]), headers, payload)


def base64_request(csr_pem: Path, *, line_breaks: bool = True) -> Path:
    """The PEM request as EST sends it: base64 of the DER (RFC 8951), with or without breaks."""
    der_path = csr_pem.with_suffix(".der")
    run("openssl", "req", "-in", str(csr_pem), "-outform", "DER", "-out", str(der_path))
    encoded = (
        base64.encodebytes(der_path.read_bytes())
        if line_breaks
        else base64.b64encode(der_path.read_bytes())
    )
    out = csr_pem.with_suffix(".b64")
    out.write_bytes(encoded)
    return out


def subject_and_serial(cert_pem: Path) -> tuple[str, str]:
    out = run("openssl", "x509", "-in", str(cert_pem), "-noout", "-subject", "-serial").stdout
    subject, serial = out.splitlines()
    return subject, serial.removeprefix("serial=")


def public_key(pem: Path, *, of: str) -> str:
    """The SubjectPublicKeyInfo, PEM, of a certificate (``of="x509"``) or a private key."""
    if of == "x509":
        return run("openssl", "x509", "-in", str(pem), "-noout", "-pubkey").stdout
    return run("openssl", "pkey", "-in", str(pem), "-pubout").stdout
