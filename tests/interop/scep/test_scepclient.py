"""micromdm's ``scepclient`` (Debian package ``scep``) against the real server, unmodified.

Debian's scepclient 2.1.0 signs with SHA-1 and encrypts with single DES-CBC, whatever
GetCACaps offers: it enrolls only where ``[scep] legacy_algorithms = true``, which this
module's server sets (the default server refuses it with failInfo badAlg, tested below). It
encrypts to every certificate GetCACert returns, so with an RA it is pointed at the RA
certificate by its SHA-256 fingerprint (``-ca-fingerprint``, the option that exists for
exactly this); with an RSA CA (profile ``rsadevice``) it needs nothing.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.integration.scep_http import (
    new_challenge,
    pki_operation,
    requests_for,
    scep_ca,
    scep_url,
    verify_and_lint,
)
from tests.integration.server import CertforgeServer
from tests.scep_client import (
    CertRep,
    Message,
    MessageType,
    issuer_and_subject,
    make_csr,
    read_cert_rep,
    rsa_key,
    self_signed,
)

LEGACY_CONFIG = """
[scep]
legacy_algorithms = true
[scep.static_challenges]
static = "a-static-shared-secret"

[[ca.issuers]]
name = "default"
[[ca.issuers]]
name = "rsa"
key_type = "rsa-2048"

[profiles.manual]
approval = "manual"
require_san = false
cn_in_sans = false
subject_attributes = ["CN", "O", "OU"]
key_usage = ["digitalSignature", "keyEncipherment"]
extended_key_usage = ["clientAuth"]

[profiles.static]
require_san = false
cn_in_sans = false
subject_attributes = ["CN", "O", "OU"]
key_usage = ["digitalSignature", "keyEncipherment"]
extended_key_usage = ["clientAuth"]

[profiles.rsadevice]
issuer = "rsa"
require_san = false
cn_in_sans = false
subject_attributes = ["CN", "O", "OU"]
key_usage = ["digitalSignature", "keyEncipherment"]
extended_key_usage = ["clientAuth"]
"""


@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    srv = CertforgeServer(tmp_path_factory.mktemp("scep") / "data", extra_config=LEGACY_CONFIG)
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def ra_fingerprint(url: str) -> str:
    _, recipient = scep_ca(url)
    return hashlib.sha256(recipient.public_bytes(Encoding.DER)).hexdigest()


def scepclient(
    url: str,
    workdir: Path,
    *,
    challenge: str | None = None,
    fingerprint: str | None = None,
    cn: str = "scepclient",
) -> subprocess.Popen[str]:
    workdir.mkdir(exist_ok=True)
    cmd = ["scepclient", "-server-url", url, "-private-key", str(workdir / "key.pem"), "-cn", cn]
    if challenge:
        cmd += ["-challenge", challenge]
    if fingerprint:
        cmd += ["-ca-fingerprint", fingerprint]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def run(*args: object, **kw: object) -> tuple[int, str]:
    proc = scepclient(*args, **kw)  # type: ignore[arg-type]
    out, _ = proc.communicate(timeout=120)
    return proc.returncode, out


def serial_of(pem: Path) -> int:
    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


def test_enroll_with_fresh_challenge_then_renew(
    legacy_server: CertforgeServer, tmp_path: Path
) -> None:
    url = scep_url(legacy_server)
    fp = ra_fingerprint(url)
    code, out = run(url, tmp_path / "c", challenge=new_challenge(legacy_server), fingerprint=fp)
    assert code == 0, out
    cert = tmp_path / "c" / "client.pem"
    verify_and_lint(legacy_server, cert)
    first = serial_of(cert)
    # Run again with the issued certificate present: scepclient sends a RenewalReq signed
    # with it, and no challenge.
    code, out = run(url, tmp_path / "c", fingerprint=fp)
    assert code == 0, out
    assert "RenewalReq" not in out or "failed" not in out
    assert serial_of(cert) != first
    verify_and_lint(legacy_server, cert)


def test_wrong_and_reused_challenge_are_refused(
    legacy_server: CertforgeServer, tmp_path: Path
) -> None:
    url = scep_url(legacy_server)
    fp = ra_fingerprint(url)
    code, out = run(url, tmp_path / "w", challenge="wrong-challenge", fingerprint=fp)
    assert code != 0 and "badRequest" in out, out
    challenge = new_challenge(legacy_server)
    code, out = run(url, tmp_path / "a", challenge=challenge, fingerprint=fp)
    assert code == 0, out
    code, out = run(url, tmp_path / "b", challenge=challenge, fingerprint=fp)
    assert code != 0 and "badRequest" in out, out
    assert not (tmp_path / "b" / "client.pem").exists()


def test_static_challenge_profile(legacy_server: CertforgeServer, tmp_path: Path) -> None:
    url = scep_url(legacy_server, "static")
    fp = ra_fingerprint(url)
    for name in ("s1", "s2"):  # a static challenge is not used up
        code, out = run(url, tmp_path / name, challenge="a-static-shared-secret", fingerprint=fp)
        assert code == 0, out


def test_rsa_ca_is_its_own_scep_identity(legacy_server: CertforgeServer, tmp_path: Path) -> None:
    url = scep_url(legacy_server, "rsadevice")
    certs, _ = scep_ca(url)
    assert len(certs) == 1  # the CA certificate alone: no RA
    code, out = run(url, tmp_path / "r", challenge=new_challenge(legacy_server))
    assert code == 0, out
    verify_and_lint(legacy_server, tmp_path / "r" / "client.pem", issuer="rsa")


def test_pending_then_approve_then_poll(legacy_server: CertforgeServer, tmp_path: Path) -> None:
    """scepclient polls a PENDING request by resending it every 30 seconds."""
    url = scep_url(legacy_server, "manual")
    proc = scepclient(
        url,
        tmp_path / "p",
        challenge=new_challenge(legacy_server),
        fingerprint=ra_fingerprint(url),
        cn="pending-device",
    )
    try:
        request_id = None
        deadline = time.monotonic() + 60
        while request_id is None and time.monotonic() < deadline:
            listed = json.loads(
                legacy_server.cli(
                    "request", "list", "--status", "pending", "--json", check=True
                ).stdout
            )
            ids = [r["id"] for r in listed["requests"] if "pending-device" in r["subject"]]
            request_id = ids[0] if ids else None
            if request_id is None:
                time.sleep(0.5)  # polling the server for the client's first request
        assert request_id is not None, "scepclient's request never became pending"
        legacy_server.cli("request", "approve", request_id, check=True)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "PENDING" in out
    verify_and_lint(legacy_server, tmp_path / "p" / "client.pem")


@pytest.mark.parametrize(("decision", "status"), [("approve", "0"), ("deny", "2")])
def test_cert_poll_follows_the_administrators_decision(
    legacy_server: CertforgeServer, decision: str, status: str
) -> None:
    """RFC 8894 §3.3.3: PENDING, then CertPoll gets SUCCESS once approved, FAILURE once denied."""
    url = scep_url(legacy_server, "manual")
    certs, recipient = scep_ca(url)
    key = rsa_key()
    cn = f"poll-{decision}"
    signer = self_signed(key, cn)

    def send(message_type: str, content: bytes, tid: str) -> CertRep:
        msg = Message(
            message_type=message_type,
            content=content,
            recipient=recipient,
            signer_cert=signer,
            signer_key=key,
            transaction_id=tid,
        )
        return read_cert_rep(pki_operation(url, msg.build()).body, key=key, cert=signer)

    tid = f"tid-{cn}"
    csr = make_csr(key, cn, challenge=new_challenge(legacy_server))
    assert send(MessageType.PKCS_REQ, csr, tid).status == "3"  # PENDING
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    poll = issuer_and_subject(next(c for c in certs if c != recipient), subject)
    assert send(MessageType.CERT_POLL, poll, tid).status == "3"
    (request,) = requests_for(legacy_server, cn)
    legacy_server.cli("request", decision, str(request["id"]), check=True)
    answer = send(MessageType.CERT_POLL, poll, tid)
    assert answer.status == status
    if decision == "approve":
        assert answer.certificate is not None
        assert answer.certificate.public_key() == key.public_key()
    else:
        assert answer.fail_info == "2"  # badRequest
