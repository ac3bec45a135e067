"""Helpers for the revocation tests: issue through the CLI, fetch CRLs, run openssl and pkilint."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.integration.openssl import make_csr
from tests.integration.server import BIN, CertforgeServer


def issue(server: CertforgeServer, work: Path, name: str) -> tuple[str, Path]:
    """A certificate issued through the REST front end: its serial (hex) and chain file."""
    _, csr = make_csr(work, name)
    rid, status = server.cli("request", "submit", str(csr), check=True).stdout.split()
    assert status == "pending"
    server.cli("request", "approve", rid, check=True)
    chain = work / f"{name}.pem"
    body = json.loads(
        server.cli("request", "get", rid, "--out", str(chain), "--json", check=True).stdout
    )
    return str(body["serial"]), chain


def split_chain(chain: Path) -> tuple[Path, Path]:
    """The leaf and the issuing CA of a chain file, as separate PEM files."""
    certs = x509.load_pem_x509_certificates(chain.read_bytes())
    leaf, issuing = chain.with_suffix(".leaf.pem"), chain.with_suffix(".issuing.pem")
    leaf.write_bytes(certs[0].public_bytes(Encoding.PEM))
    issuing.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs[1:]))
    return leaf, issuing


def cdp_url(chain: Path) -> str:
    """The URL in the leaf's CRL distribution point."""
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    cdp = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    names = cdp[0].full_name
    assert names is not None
    return str(names[0].value)


def fetch(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read(), dict(resp.headers)


def save_crl(work: Path, der: bytes, name: str) -> Path:
    """The CRL as PEM (what ``openssl verify -CRLfile`` reads)."""
    path = work / f"{name}.crl.pem"
    path.write_bytes(x509.load_der_x509_crl(der).public_bytes(Encoding.PEM))
    return path


def publish(server: CertforgeServer) -> list[str]:
    return server.cli("crl", "publish", check=True).stdout.splitlines()


def openssl_verify_crl(
    root: Path,
    chain: Path,
    crls: list[Path],
    *,
    check_all: bool = False,
    extra: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    leaf, issuing = split_chain(chain)
    cmd = ["openssl", "verify", "-crl_check_all" if check_all else "-crl_check", *(extra or [])]
    cmd += ["-CAfile", str(root), "-untrusted", str(issuing)]
    for crl in crls:
        cmd += ["-CRLfile", str(crl)]
    return subprocess.run(
        [*cmd, str(leaf)], capture_output=True, text=True, timeout=60, check=False
    )


def pkilint(tool: str, path: Path, *args: str) -> list[str]:
    """pkilint's findings at WARNING or worse, one per line; ERROR or FATAL ones fail callers."""
    out = subprocess.run(
        [str(BIN / tool), "lint", *args, "-s", "WARNING", "-f", "TEXT", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in out.stderr, out.stderr
    return [line for line in out.stdout.splitlines() if line.strip()]


def serial_of(chain: Path) -> int:
    return x509.load_pem_x509_certificates(chain.read_bytes())[0].serial_number
