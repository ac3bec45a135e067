"""Talking SCEP over HTTP to a running certforge (tests and the benchmark share it)."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from tests.integration.server import BIN, CertforgeServer
from tests.scep_client import ca_certificates, recipient_of


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes


def scep_url(server: CertforgeServer, profile: str = "") -> str:
    return f"{server.http_url}/scep" + (f"/{profile}" if profile else "")


def call(
    url: str, operation: str, *, body: bytes | None = None, get_message: bytes | None = None
) -> Answer:
    query = {"operation": operation}
    if get_message is not None:
        query["message"] = base64.b64encode(get_message).decode()
    req = urllib.request.Request(
        f"{url}?{urllib.parse.urlencode(query)}",
        data=body,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/x-pki-message"} if body is not None else {},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return Answer(resp.status, resp.headers.get_content_type(), resp.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers.get_content_type(), exc.read())


def pki_operation(url: str, message: bytes) -> Answer:
    return call(url, "PKIOperation", body=message)


def scep_ca(url: str) -> tuple[list[x509.Certificate], x509.Certificate]:
    """GetCACert: the certificates, and the one to encrypt to."""
    answer = call(url, "GetCACert")
    assert answer.status == 200, answer
    certs = ca_certificates(answer.body)
    return certs, recipient_of(certs)


def new_challenge(server: CertforgeServer, profile: str | None = None) -> str:
    args = ["scep", "challenge", *(["--profile", profile] if profile else [])]
    return server.cli(*args, check=True).stdout.strip()


def requests_for(server: CertforgeServer, subject: str) -> list[dict[str, object]]:
    out = server.curl(
        "-H",
        f"Authorization: Bearer {server.token}",
        f"{server.url}/api/v1/admin/requests?subject={urllib.parse.quote(subject)}",
    )
    return list(json.loads(out.stdout)["requests"])


def certificates_for(server: CertforgeServer, subject: str) -> list[dict[str, object]]:
    out = server.curl(
        "-H",
        f"Authorization: Bearer {server.token}",
        f"{server.url}/api/v1/admin/certificates?subject={urllib.parse.quote(subject)}",
    )
    return list(json.loads(out.stdout)["certificates"])


def log_size(server: CertforgeServer) -> int:
    """Where the server's log ends now: ``errors_logged`` reads only what comes after."""
    assert server.log_path is not None
    return server.log_path.stat().st_size


def errors_logged(server: CertforgeServer, since: int) -> list[str]:
    """The log lines at error level or worse written after offset ``since``."""
    assert server.log_path is not None
    with server.log_path.open("rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    return [line for line in lines if '"level": "error"' in line or '"level": "critical"' in line]


def verify_and_lint(server: CertforgeServer, leaf_pem: Path, issuer: str = "default") -> None:
    """The certificate chains to root.pem (openssl verify) and pkilint finds no error."""
    out = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(server.root),
            "-untrusted",
            str(server.data_dir / "ca" / f"{issuer}.pem"),
            str(leaf_pem),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    lint = subprocess.run(
        [str(BIN / "lint_pkix_cert"), "lint", "-s", "ERROR", str(leaf_pem)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.stdout.strip() == "", lint.stdout
