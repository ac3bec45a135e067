"""EST (RFC 7030, RFC 8951) against the real server, with curl and openssl as the clients.

One server for the module, configured with an external trust anchor (a manufacturer's IDevID
CA made here with openssl), a manual-approval profile, a profile that links the request to
the TLS session (RFC 7030 §3.5) and one that accepts EST users only.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import sqlite3
import statistics
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type

from tests.integration.est_client import (
    Answer,
    base64_request,
    curl,
    public_key,
    subject_and_serial,
)
from tests.integration.openssl import make_csr, verify
from tests.integration.scep_http import errors_logged, log_size
from tests.integration.server import CertforgeServer, run
from tests.integration.test_bad_input import subject_csr
from tests.integration.test_profiles import pkilint

# RFC 7030 §4.4.1.1 and §4.4.1.2 (id-aa 37, id-aa 54).
DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.37"
ASYMMETRIC_DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.54"


@dataclass
class EST:
    server: CertforgeServer
    files: Path
    user: str
    password: str

    @property
    def basic(self) -> tuple[str, str]:
        return ("-u", f"{self.user}:{self.password}")

    @property
    def device_cert(self) -> tuple[str, ...]:
        return ("--cert", str(self.files / "idevid.pem"), "--key", str(self.files / "idevid.key"))


def make_idevid(files: Path) -> None:
    """A manufacturer's CA and one device's IDevID certificate, made with openssl; and an
    expired IDevID certificate (openssl 3.0 cannot backdate, so cryptography signs that one),
    and a self-signed certificate nobody trusts."""
    ca_key, ca = files / "idevid-ca.key", files / "idevid-ca.pem"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    run(
        "openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca),
        "-subj", "/O=Acme Devices/CN=Acme IDevID CA", "-days", "3650",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    run(
        "openssl", "req", "-new", *ec, "-keyout", str(files / "idevid.key"),
        "-out", str(files / "idevid.csr"), "-subj", "/CN=sensor-1/serialNumber=SN0001",
    )  # fmt: skip
    run(
        "openssl", "x509", "-req", "-in", str(files / "idevid.csr"), "-CA", str(ca),
        "-CAkey", str(ca_key), "-set_serial", "4660", "-days", "365",
        "-out", str(files / "idevid.pem"),
    )  # fmt: skip
    run(
        "openssl", "req", "-x509", *ec, "-keyout", str(files / "stranger.key"),
        "-out", str(files / "stranger.pem"), "-subj", "/CN=stranger", "-days", "30",
    )  # fmt: skip
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), None)
    device_key = serialization.load_pem_private_key((files / "idevid.key").read_bytes(), None)
    now = datetime.now(UTC)
    expired = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=sensor-old"))
        .issuer_name(x509.load_pem_x509_certificate(ca.read_bytes()).subject)
        .public_key(device_key.public_key())  # type: ignore[arg-type]
        .serial_number(4661)
        .not_valid_before(now - timedelta(days=400))
        .not_valid_after(now - timedelta(days=35))
        .sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    )
    (files / "expired.pem").write_bytes(expired.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def est(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EST]:
    files = tmp_path_factory.mktemp("est-files")
    make_idevid(files)
    make_sub_ca(files, "idevid-sub-ca")  # listed in trust_anchors below
    make_sub_ca(files, "idevid-unlisted-ca")  # not listed
    server = CertforgeServer(
        tmp_path_factory.mktemp("est") / "data",
        public_http_url="http://pki.example.com",  # pkilint's CA/B linter refuses 127.0.0.1
        extra_config=f"""
[est]
trust_anchors = ["{files / "idevid-ca.pem"}", "{files / "idevid-sub-ca.pem"}"]
retry_after = 1
[profiles.est-manual]
approval = "manual"
[profiles.est-linked]
est_pop_linking = true
[profiles.est-users-only.auth]
est = ["est_basic"]
""",
    )
    server.start()
    password = server.cli("est", "user", "add", "alice", check=True).stdout.strip()
    yield EST(server, files, "alice", password)
    assert server.stop() == 0, server.log_tail()


def enroll(est: EST, work: Path, name: str, *args: str, label: str = "") -> Answer:
    _, csr = make_csr(work, name, subject=f"/CN={name}.example.com", sans=f"DNS:{name}.example.com")
    path = f"{label}/simpleenroll" if label else "simpleenroll"
    return curl(est.server, path, *(args or est.basic), body=base64_request(csr))


def request_count(server: CertforgeServer) -> int:
    out = server.cli("request", "list", "--json", check=True).stdout
    return len(json.loads(out)["requests"])


# ----------------------------------------------------------------- distribution
def test_cacerts_is_the_chain_to_the_root(est: EST, work: Path) -> None:
    answer = curl(est.server, "cacerts")
    assert answer.headers["content-type"].startswith("application/pkcs7-mime")
    text = answer.pkcs7_certs(work, "cacerts").read_text()
    assert "CN = certforge Root CA" in text
    assert "CN = certforge default Issuing CA" in text
    assert est.server.root.read_text().strip() in text


def test_csrattrs_parse_with_openssl(est: EST, work: Path) -> None:
    def attributes(path: str) -> str:
        answer = curl(est.server, path)
        assert answer.status == 200
        assert answer.headers["content-type"] == "application/csrattrs"
        der = work / "attrs.der"
        der.write_bytes(base64.b64decode(answer.body))
        return run("openssl", "asn1parse", "-inform", "DER", "-in", str(der)).stdout

    default = attributes("csrattrs")
    assert "id-ecPublicKey" in default
    assert "prime256v1" in default
    assert "ecdsa-with-SHA256" in default
    assert "Subject Alternative Name" in default
    assert "challengePassword" in attributes("est-linked/csrattrs")


# ----------------------------------------------------------------- enrollment
def test_simpleenroll_with_basic_issues_a_clean_certificate(est: EST, work: Path) -> None:
    answer = enroll(est, work, "www")
    assert answer.headers["content-type"].startswith("application/pkcs7-mime")
    leaf = answer.pkcs7_certs(work, "www")
    chain = work / "chain.pem"
    chain.write_text(
        leaf.read_text() + curl(est.server, "cacerts").pkcs7_certs(work, "ca").read_text()
    )
    assert "OK" in verify(est.server.root, chain, purpose="sslserver")
    findings = pkilint("lint_cabf_serverauth_cert", leaf, "-t", "DV-FINAL-CERTIFICATE")
    assert findings == [], "\n".join(findings)


def test_base64_without_line_breaks_is_accepted(est: EST, work: Path) -> None:
    _, csr = make_csr(work, "flat", subject="/CN=flat.example.com", sans="DNS:flat.example.com")
    body = base64_request(csr, line_breaks=False)
    assert curl(est.server, "simpleenroll", *est.basic, body=body).status == 200


@pytest.mark.parametrize("tls", [(), ("--tlsv1.2", "--tls-max", "1.2")], ids=["tls1.3", "tls1.2"])
def test_simplereenroll_with_the_issued_certificate(
    est: EST, work: Path, tls: tuple[str, ...]
) -> None:
    # A device certificate (clientAuth): a tls-server one (serverAuth only) is no TLS client
    # certificate (RFC 5280 §4.2.1.12).
    first = enroll(est, work, "renew", label="device").pkcs7_certs(work, "first")
    key = work / "renew.key"
    _, csr = make_csr(work, "renew2", subject="/CN=renew.example.com", sans="DNS:renew.example.com")
    answer = curl(
        est.server, "simplereenroll", *tls, "--cert", str(first), "--key", str(key),
        body=base64_request(csr),
    )  # fmt: skip
    second = answer.pkcs7_certs(work, "second")
    assert subject_and_serial(second)[0] == subject_and_serial(first)[0]
    assert subject_and_serial(second)[1] != subject_and_serial(first)[1]


def test_simplereenroll_refusals(est: EST, work: Path) -> None:
    cert = enroll(est, work, "old", label="device").pkcs7_certs(work, "old")
    tls = ("--cert", str(cert), "--key", str(work / "old.key"))
    _, other = make_csr(
        work, "other", subject="/CN=other.example.com", sans="DNS:other.example.com"
    )
    changed = curl(est.server, "simplereenroll", *tls, body=base64_request(other))
    assert changed.status == 400, changed.text
    assert "subject" in changed.text
    _, more = make_csr(
        work, "more", subject="/CN=old.example.com", sans="DNS:old.example.com,DNS:new.example.com"
    )
    added = curl(est.server, "simplereenroll", *tls, body=base64_request(more))
    assert added.status == 403, added.text
    assert "new.example.com" in added.text
    _, same = make_csr(work, "old2", subject="/CN=old.example.com", sans="DNS:old.example.com")
    no_cert = curl(est.server, "simplereenroll", *est.basic, body=base64_request(same))
    assert no_cert.status == 401
    idevid = curl(est.server, "simplereenroll", *est.device_cert, body=base64_request(same))
    assert idevid.status == 403, idevid.text
    serial = subject_and_serial(cert)[1]
    est.server.cli("cert", "revoke", serial, "--reason", "keyCompromise", check=True)
    revoked = curl(est.server, "simplereenroll", *tls, body=base64_request(same))
    assert revoked.status == 403
    assert "revoked" in revoked.text


# ----------------------------------------------------------------- what a certificate vouches for
def test_a_certificate_not_for_client_authentication_authenticates_nothing(
    est: EST, work: Path
) -> None:
    """RFC 5280 §4.2.1.12: a tls-server certificate (serverAuth only, as ACME issues them) is
    no TLS client certificate. It got a certificate for any name (simpleenroll) and became a
    730-day clientAuth one (device/simplereenroll) on the old code."""
    cert = enroll(est, work, "srv").pkcs7_certs(work, "srv")
    tls = ("--cert", str(cert), "--key", str(work / "srv.key"))
    _, victim = make_csr(work, "victim", subject="/CN=www.victim.test", sans="DNS:www.victim.test")
    _, same = make_csr(work, "srv2", subject="/CN=srv.example.com", sans="DNS:srv.example.com")
    before, since = request_count(est.server), log_size(est.server)
    for path, csr in [
        ("tls-server/simpleenroll", victim),
        ("device/simplereenroll", same),
        ("serverkeygen", victim),
        ("simplereenroll", same),
    ]:
        answer = curl(est.server, path, *tls, body=base64_request(csr))
        assert answer.status == 403, (path, answer.status, answer.text)
        assert "clientAuth" in answer.text, path
    assert request_count(est.server) == before
    assert errors_logged(est.server, since) == []


def test_a_client_certificate_vouches_only_for_its_own_names(est: EST, work: Path) -> None:
    """A certificate with clientAuth authenticates requests for its own subject and names
    only (any name, on the old code); Basic credentials still authorise any name."""
    cert = enroll(est, work, "dev", label="device").pkcs7_certs(work, "dev")
    tls = ("--cert", str(cert), "--key", str(work / "dev.key"))
    _, victim = make_csr(work, "victim", subject="/CN=www.victim.test", sans="DNS:www.victim.test")
    _, added = make_csr(
        work, "added", subject="/CN=dev.example.com", sans="DNS:dev.example.com,DNS:www.victim.test"
    )
    before, since = request_count(est.server), log_size(est.server)
    for path, csr in [
        ("tls-server/simpleenroll", victim),
        ("device/simpleenroll", victim),
        ("tls-server/simpleenroll", added),
        ("device/serverkeygen", victim),
    ]:
        answer = curl(est.server, path, *tls, body=base64_request(csr))
        assert answer.status == 403, (path, answer.status, answer.text)
    assert request_count(est.server) == before
    assert errors_logged(est.server, since) == []
    _, own = make_csr(work, "dev2", subject="/CN=dev.example.com", sans="DNS:dev.example.com")
    answer = curl(est.server, "tls-server/simpleenroll", *tls, body=base64_request(own))
    assert "CN = dev.example.com" in answer.pkcs7_certs(work, "dev-server").read_text()
    with_basic = curl(est.server, "simpleenroll", *tls, *est.basic, body=base64_request(victim))
    assert with_basic.status == 200, with_basic.text


def test_simplereenroll_stays_in_the_certificates_profile(est: EST, work: Path) -> None:
    """RFC 7030 §4.2.2: a renewal is of the certificate, so of its profile (the store records
    it); another label switched profile on the old code."""
    cert = enroll(est, work, "stay", label="device").pkcs7_certs(work, "stay")
    tls = ("--cert", str(cert), "--key", str(work / "stay.key"))
    _, csr = make_csr(work, "stay2", subject="/CN=stay.example.com", sans="DNS:stay.example.com")
    before = request_count(est.server)
    for label in ("tls-client", "tls-server"):
        other = curl(est.server, f"{label}/simplereenroll", *tls, body=base64_request(csr))
        assert other.status == 403, (label, other.text)
        assert "'device'" in other.text
    assert request_count(est.server) == before
    renewed = curl(est.server, "device/simplereenroll", *tls, body=base64_request(csr))
    assert subject_and_serial(renewed.pkcs7_certs(work, "stayed"))[0] == subject_and_serial(cert)[0]


def test_serverkeygen_answers_the_key_and_its_certificate(est: EST, work: Path) -> None:
    client_key, csr = make_csr(
        work, "keygen", subject="/CN=keygen.example.com", sans="DNS:keygen.example.com"
    )
    answer = curl(est.server, "serverkeygen", *est.basic, body=base64_request(csr))
    assert answer.status == 200, answer.text
    key_pem, cert_pem = split_serverkeygen(answer, work, "keygen")
    assert public_key(cert_pem, of="x509") == public_key(key_pem, of="key")
    assert public_key(key_pem, of="key") != public_key(client_key, of="key")


def test_serverkeygen_refuses_a_key_kind_the_profile_denies_before_making_it(
    est: EST, work: Path
) -> None:
    """tls-server allows no Ed25519 key: refused before one is made, nothing recorded (on the
    old code the key was made, then the policy's denial recorded; for RSA-8192 making it took
    9 to 16 s of CPU). The one-time password is not used up."""
    challenge = est.server.cli("scep", "challenge", check=True).stdout.strip()
    _, csr = make_csr(
        work, "edgen", subject="/CN=edgen.example.com", sans="DNS:edgen.example.com", key="ED25519"
    )
    before = request_count(est.server)
    answer = curl(est.server, "serverkeygen", "-u", f"x:{challenge}", body=base64_request(csr))
    assert answer.status == 403, answer.text
    assert "ed25519" in answer.text
    assert request_count(est.server) == before
    assert enroll(est, work, "edgen-otp", "-u", f"x:{challenge}").status == 200


def split_serverkeygen(answer: Answer, work: Path, name: str) -> tuple[Path, Path]:
    """The multipart/mixed answer's two parts (RFC 7030 §4.4.2): the key, then the
    certificate, each written as PEM by openssl."""
    parts = mime_parts(answer)
    assert set(parts) == {"application/pkcs8", "certs-only"}
    key_der = work / f"{name}.server.key.der"
    key_der.write_bytes(parts["application/pkcs8"])
    key_pem = work / f"{name}.server.key"
    run("openssl", "pkey", "-inform", "DER", "-in", str(key_der), "-out", str(key_pem))
    cert = Answer(200, {}, base64.b64encode(parts["certs-only"]))
    return key_pem, cert.pkcs7_certs(work, f"{name}-cert")


def test_a_label_selects_the_profile(est: EST, work: Path) -> None:
    cert = enroll(est, work, "router", label="device").pkcs7_certs(work, "router")
    eku = run("openssl", "x509", "-in", str(cert), "-noout", "-ext", "extendedKeyUsage").stdout
    assert "TLS Web Client Authentication" in eku
    assert enroll(est, work, "nowhere", label="no-such-label").status == 404


def est_documents(server: CertforgeServer) -> dict[str, list[str]]:
    """The store's EST documents (kind -> data), read with Python's sqlite3 (read-only)."""
    db = sqlite3.connect(f"file:{server.data_dir / 'certforge.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT kind, data FROM documents WHERE kind LIKE 'est_%'").fetchall()
    finally:
        db.close()
    found: dict[str, list[str]] = {}
    for kind, data in rows:
        found.setdefault(kind, []).append(data)
    return found


def held_requests(server: CertforgeServer, subject: str) -> list[dict[str, str]]:
    listed = json.loads(server.cli("request", "list", "--json", check=True).stdout)
    return [r for r in listed["requests"] if r["subject"] == subject]


def test_pending_until_approved_then_the_retry_gets_the_certificate(est: EST, work: Path) -> None:
    _, csr = make_csr(work, "held", subject="/CN=held.example.com", sans="DNS:held.example.com")
    body = base64_request(csr)
    first = curl(est.server, "est-manual/simpleenroll", *est.basic, body=body)
    assert first.status == 202, first.text
    assert first.headers["retry-after"] == "1"
    # The retry's lookup is the request's own transaction id: no document was written for it,
    # so no stop between two writes can make the retry a second request.
    [held] = held_requests(est.server, "CN=held.example.com")
    assert held["transaction_id"].startswith("est-")
    assert "est_pending" not in est_documents(est.server)
    assert curl(est.server, "est-manual/simpleenroll", *est.basic, body=body).status == 202
    assert len(held_requests(est.server, "CN=held.example.com")) == 1
    est.server.cli("request", "approve", held["id"], check=True)
    answer = curl(est.server, "est-manual/simpleenroll", *est.basic, body=body)
    assert "CN = held.example.com" in answer.pkcs7_certs(work, "held").read_text()
    assert len(held_requests(est.server, "CN=held.example.com")) == 1
    # Delivered: the same request again is a new enrollment, held again.
    assert curl(est.server, "est-manual/simpleenroll", *est.basic, body=body).status == 202
    assert len(held_requests(est.server, "CN=held.example.com")) == 2


def test_pending_survives_a_kill_between_the_answer_and_the_retry(
    tmp_path_factory: pytest.TempPathFactory, work: Path
) -> None:
    """kill -9 right after the 202: the restarted server's retry finds the same request."""
    server = CertforgeServer(
        tmp_path_factory.mktemp("est-kill") / "data",
        extra_config='[profiles.tls-server]\napproval = "manual"\n',
    )
    server.start()
    try:
        password = server.cli("est", "user", "add", "dora", check=True).stdout.strip()
        _, csr = make_csr(work, "kill", subject="/CN=kill.example.com", sans="DNS:kill.example.com")
        body, login = base64_request(csr), ("-u", f"dora:{password}")
        assert curl(server, "simpleenroll", *login, body=body).status == 202
        server.kill()
        server.start()
        assert curl(server, "simpleenroll", *login, body=body).status == 202
        assert len(held_requests(server, "CN=kill.example.com")) == 1
    finally:
        assert server.stop() == 0, server.log_tail()


def test_pending_serverkeygen_keeps_the_key_sealed_for_the_retry(est: EST, work: Path) -> None:
    _, csr = make_csr(work, "heldkey", subject="/CN=hk.example.com", sans="DNS:hk.example.com")
    body = base64_request(csr)
    assert curl(est.server, "est-manual/serverkeygen", *est.basic, body=body).status == 202
    [held] = held_requests(est.server, "CN=hk.example.com")
    [sealed] = est_documents(est.server)["est_serverkeygen_key"]
    assert "sealed" in sealed
    assert "PRIVATE" not in sealed
    assert curl(est.server, "est-manual/serverkeygen", *est.basic, body=body).status == 202
    est.server.cli("request", "approve", held["id"], check=True)
    answer = curl(est.server, "est-manual/serverkeygen", *est.basic, body=body)
    assert answer.status == 200, answer.text
    key_pem, cert_pem = split_serverkeygen(answer, work, "heldkey")
    assert public_key(cert_pem, of="x509") == public_key(key_pem, of="key")
    # The PKCS#8 key the store kept (sealed) is gone once delivered.
    assert "est_serverkeygen_key" not in est_documents(est.server)
    assert len(held_requests(est.server, "CN=hk.example.com")) == 1
    key_file = est.server.data_dir / "est-serverkeygen.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


# ----------------------------------------------------------------- authentication
def test_one_time_password_as_basic_password(est: EST, work: Path) -> None:
    challenge = est.server.cli("scep", "challenge", check=True).stdout.strip()
    garbage = work / "garbage.b64"
    garbage.write_bytes(base64.b64encode(b"not a request"))
    login = ("-u", f"sensor:{challenge}")
    # Bad input does not use the password up.
    assert curl(est.server, "simpleenroll", *login, body=garbage).status == 400
    assert enroll(est, work, "otp", *login).status == 200
    reused = enroll(est, work, "otp2", *login)
    assert reused.status == 401
    assert reused.headers["www-authenticate"].startswith("Basic")


def test_unknown_and_known_users_take_as_long_to_refuse(est: EST, work: Path) -> None:
    """A wrong password for an existing user took 68 ms (scrypt), an unknown user 2 ms: the
    user names could be listed by timing. Medians of interleaved tries, generously compared
    (the machine is shared)."""
    _, csr = make_csr(work, "timing", subject="/CN=t.example.com", sans="DNS:t.example.com")
    body = base64_request(csr).read_bytes()
    context = est.server.ssl_context()

    def refusal_ms(user: str) -> float:
        auth = base64.b64encode(f"{user}:wrong-password".encode()).decode()
        request = urllib.request.Request(
            f"{est.server.url}/.well-known/est/est-users-only/simpleenroll",
            data=body,
            headers={"Content-Type": "application/pkcs10", "Authorization": f"Basic {auth}"},
        )
        started = time.perf_counter()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, context=context, timeout=30)
        refused.value.close()
        assert refused.value.code == 401
        return (time.perf_counter() - started) * 1000

    known, unknown = [], []
    for _ in range(9):
        known.append(refusal_ms(est.user))
        unknown.append(refusal_ms("mallory"))
    assert statistics.median(unknown) > 0.4 * statistics.median(known), (known, unknown)


def test_profile_for_users_only_refuses_one_time_passwords(est: EST, work: Path) -> None:
    challenge = est.server.cli("scep", "challenge", check=True).stdout.strip()
    assert enroll(est, work, "u1", "-u", f"x:{challenge}", label="est-users-only").status == 401
    assert enroll(est, work, "u2", label="est-users-only").status == 200


def test_idevid_certificate_bootstraps_a_device(est: EST, work: Path) -> None:
    _, csr = make_csr(work, "sensor", subject="/CN=sensor-1/serialNumber=SN0001", sans="")
    answer = curl(est.server, "device/simpleenroll", *est.device_cert, body=base64_request(csr))
    assert "CN = sensor-1" in answer.pkcs7_certs(work, "ldevid").read_text()


def test_admin_api_lists_and_removes_users(est: EST, work: Path) -> None:
    server = est.server
    admin = ("-H", f"Authorization: Bearer {server.token}")
    users_url = f"{server.url}/api/v1/admin/est/users"
    password = server.cli("est", "user", "add", "bob", check=True).stdout.strip()
    listed = json.loads(server.curl(*admin, users_url).stdout)
    assert {"alice", "bob"} <= {u["name"] for u in listed["users"]}
    assert "hash" not in json.dumps(listed)
    again = server.cli("est", "user", "add", "bob")
    assert again.returncode == 1
    assert "exists" in again.stderr
    removed = server.curl(*admin, "-X", "DELETE", "-w", "%{http_code}", f"{users_url}/bob")
    assert removed.stdout == b"204"
    assert "bob" not in server.cli("est", "user", "list", check=True).stdout
    server.cli("est", "user", "add", "carol", check=True)
    assert (
        server.cli("est", "user", "remove", "carol", check=True).stdout.strip() == "carol removed"
    )
    unknown = server.cli("est", "user", "remove", "carol")
    assert unknown.returncode == 1  # contract: exit 1, refused, with a one-line reason
    assert unknown.stderr.strip() == "certforge: no EST user named 'carol' (HTTP 404)"
    assert enroll(est, work, "gone", "-u", f"bob:{password}").status == 401


def test_a_policy_denial_is_a_403_with_the_reason(est: EST, work: Path) -> None:
    _, csr = make_csr(
        work, "edkey", subject="/CN=ed.example.com", sans="DNS:ed.example.com", key="ED25519"
    )
    answer = curl(est.server, "simpleenroll", *est.basic, body=base64_request(csr))
    assert answer.status == 403
    assert answer.text.startswith("denied:")
    assert "ed25519" in answer.text


# ----------------------------------------------------------------- bad input
def _tampered(csr_b64: Path) -> Path:
    der = bytearray(base64.b64decode(csr_b64.read_bytes()))
    der[-3] ^= 0x01  # inside the signature
    out = csr_b64.with_suffix(".bad.b64")
    out.write_bytes(base64.b64encode(bytes(der)))
    return out


def test_bad_input_is_refused_with_a_reason_and_nothing_recorded(est: EST, work: Path) -> None:
    _, csr = make_csr(work, "bad", subject="/CN=bad.example.com", sans="DNS:bad.example.com")
    good = base64_request(csr)
    (work / "junk.b64").write_bytes(b"%%% not base64 %%%")
    (work / "notcsr.b64").write_bytes(base64.b64encode(b"\x30\x03\x02\x01\x01"))
    (work / "huge.b64").write_bytes(base64.encodebytes(b"\0" * 100_000))
    files = est.files
    stranger = ("--cert", str(files / "stranger.pem"), "--key", str(files / "stranger.key"))
    expired = ("--cert", str(files / "expired.pem"), "--key", str(files / "idevid.key"))
    cases: list[tuple[str, tuple[str, ...], Path, str, int]] = [
        ("wrong password", ("-u", "alice:wrong"), good, "application/pkcs10", 401),
        ("no credentials", (), good, "application/pkcs10", 401),
        ("untrusted client certificate", stranger, good, "application/pkcs10", 403),
        ("expired client certificate", expired, good, "application/pkcs10", 403),
        ("wrong content type", est.basic, good, "application/json", 415),
        ("not base64", est.basic, work / "junk.b64", "application/pkcs10", 400),
        ("not PKCS#10", est.basic, work / "notcsr.b64", "application/pkcs10", 400),
        ("bad CSR signature", est.basic, _tampered(good), "application/pkcs10", 400),
        ("oversized body", est.basic, work / "huge.b64", "application/pkcs10", 400),
    ]
    before = request_count(est.server)
    for name, args, body, ctype, status in cases:
        answer = curl(est.server, "simpleenroll", *args, body=body, content_type=ctype)
        assert answer.status == status, (name, answer.status, answer.text)
        assert answer.headers["content-type"].startswith("text/plain"), name
        assert answer.text.strip() and "internal error" not in answer.text, name
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Basic"), name
    assert request_count(est.server) == before


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_a_subject_no_certificate_can_carry_is_a_400_and_keeps_the_password(
    est: EST, work: Path
) -> None:
    """A CN over 64 characters, an empty CN, a serialNumber that is no PrintableString: a 500
    with a traceback from signing on the old code. The one-time password is not used up."""
    challenge = est.server.cli("scep", "challenge", check=True).stdout.strip()
    login = ("-u", f"sensor:{challenge}")
    before, since = request_count(est.server), log_size(est.server)
    for number, (attrs, sans) in enumerate(
        [
            ([("2.5.4.3", "x" * 65)], ()),
            ([("2.5.4.3", "")], ("e.example.com",)),
            ([("2.5.4.3", "d1"), ("2.5.4.5", "SN_1@x")], ()),
        ]
    ):
        body = work / f"subject-{number}.b64"
        body.write_bytes(base64.b64encode(subject_csr(attrs, sans)))
        answer = curl(est.server, "device/simpleenroll", *login, body=body)
        assert answer.status == 400, (attrs, answer.status, answer.text)
        assert "subject" in answer.text
    assert request_count(est.server) == before
    assert errors_logged(est.server, since) == []
    assert enroll(est, work, "kept-otp", *login, label="device").status == 200


def test_fullcmc_is_not_implemented(est: EST, work: Path) -> None:
    body = work / "cmc"
    body.write_bytes(b"MAA=")
    answer = curl(
        est.server, "fullcmc", *est.basic, body=body, content_type="application/pkcs7-mime"
    )
    assert answer.status == 501


def test_clients_without_a_certificate_still_reach_rest_and_admin(est: EST) -> None:
    result = est.server.curl("-o", "/dev/null", "-w", "%{http_code}", f"{est.server.url}/healthz")
    assert result.stdout == b"200"
    assert est.server.cli("cert", "list").returncode == 0


# ----------------------------------------------------------------- PoP linking
def test_pop_linking_refused_on_tls13_and_without_the_value(est: EST, work: Path) -> None:
    answer = enroll(est, work, "linked13", label="est-linked")
    assert answer.status == 403
    assert "TLS 1.2" in answer.text
    unlinked = enroll(
        est, work, "linked12", "--tlsv1.2", "--tls-max", "1.2", *est.basic, label="est-linked"
    )
    assert unlinked.status == 403
    assert "challengePassword" in unlinked.text


def test_pop_linking_with_openssl_s_client_on_tls12(est: EST, work: Path) -> None:
    """openssl s_client shows its Finished message (-msg): its verify_data is tls-unique
    (RFC 5929 §3.1), which goes into the request's challengePassword, sent on that session."""
    server = est.server
    proc = subprocess.Popen(
        [
            "stdbuf", "-o0", "openssl", "s_client", "-connect", f"127.0.0.1:{server.https_port}",
            "-tls1_2", "-CAfile", str(server.root), "-msg", "-ign_eof", "-nocommands",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        tls_unique = _client_finished(proc.stdout)
        key = work / "linked.key"
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", str(key))  # fmt: skip
        config = work / "linked.cnf"
        config.write_text(
            "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\n"
            "req_extensions = ext\n[dn]\nCN = linked.example.com\n"
            f"[attrs]\nchallengePassword = {base64.b64encode(tls_unique).decode()}\n"
            "[ext]\nsubjectAltName = DNS:linked.example.com\n"
        )
        csr = work / "linked.csr"
        run("openssl", "req", "-new", "-key", str(key), "-config", str(config), "-out", str(csr))
        body = base64_request(csr).read_bytes()
        auth = base64.b64encode(f"{est.user}:{est.password}".encode()).decode()
        http = (
            f"POST /.well-known/est/est-linked/simpleenroll HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.https_port}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/pkcs10\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body
        proc.stdin.write(http)
        proc.stdin.flush()
        output = proc.stdout.read().decode(errors="replace")
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    assert "HTTP/1.1 200 OK" in output, output[-2000:]


def _client_finished(stdout: object) -> bytes:
    """The verify_data of the first Finished message s_client sent (``>>>`` in -msg)."""
    lines = iter(stdout.readline, b"")  # type: ignore[attr-defined]
    for line in lines:
        if line.startswith(b">>> ") and b"Finished" in line:
            hex_bytes: list[str] = []
            while len(hex_bytes) < 16:
                hex_bytes += next(lines).decode().split()
            return bytes.fromhex("".join(hex_bytes[4:16]))  # after the 4-byte header
    raise AssertionError("s_client printed no Finished message")


# ----------------------------------------------------------------- encrypted serverkeygen
def device_with_ski(est: EST, work: Path, name: str, newkey: tuple[str, ...]) -> Path:
    """A device certificate from the IDevID CA, with a SubjectKeyIdentifier (openssl)."""
    ext = work / f"{name}.ext"
    ext.write_text("subjectKeyIdentifier=hash\n")
    run("openssl", "req", "-new", *newkey, "-nodes", "-keyout", str(work / f"{name}.key"),
        "-out", str(work / f"{name}.csr"), "-subj", f"/CN={name}")  # fmt: skip
    run("openssl", "x509", "-req", "-in", str(work / f"{name}.csr"),
        "-CA", str(est.files / "idevid-ca.pem"), "-CAkey", str(est.files / "idevid-ca.key"),
        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
        "-extfile", str(ext), "-out", str(work / f"{name}.pem"))  # fmt: skip
    return work / f"{name}.pem"


def keygen_request(work: Path, name: str, attribute: str, value: bytes) -> Path:
    """A serverkeygen request carrying a (Asymmetric)DecryptKeyIdentifier attribute. openssl
    req writes attributes only as strings, so cryptography builds this one (an OCTET STRING)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name.from_rfc4514_string(f"CN={name}"))
        .add_attribute(x509.ObjectIdentifier(attribute), value, _tag=_ASN1Type.OctetString)
        .sign(key, hashes.SHA256())
    )
    path = work / f"{name}.b64"
    path.write_bytes(base64.encodebytes(csr.public_bytes(serialization.Encoding.DER)))
    return path


def ski_of(cert: Path) -> bytes:
    out = run("openssl", "x509", "-in", str(cert), "-noout", "-ext", "subjectKeyIdentifier")
    return bytes.fromhex(out.stdout.splitlines()[1].strip().replace(":", ""))


def mime_parts(answer: Answer) -> dict[str, bytes]:
    """The multipart/mixed answer's parts (RFC 7030 §4.4.2), by smime-type when they have
    one (both pkcs7-mime parts do), else by content type."""
    ctype = answer.headers["content-type"]
    assert ctype.startswith("multipart/mixed")
    message = email.message_from_bytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + answer.body, policy=email.policy.default
    )
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts[str(part.get_param("smime-type") or part.get_content_type())] = payload
    return parts


@pytest.mark.parametrize(
    "newkey",
    [
        pytest.param(
            ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"), id="ec/key_agreement"
        ),
        pytest.param(("-newkey", "rsa:2048"), id="rsa/key_transport"),
    ],
)
def test_serverkeygen_encrypts_the_key_to_the_client_certificate(
    est: EST, work: Path, newkey: tuple[str, ...]
) -> None:
    """RFC 7030 §4.4.1.2/§4.4.2: EnvelopedData(SignedData(key package)); openssl decrypts it
    with the device's key and verifies the server's signature up to root.pem."""
    name = f"enc-{newkey[1].split(':')[0]}"
    device = device_with_ski(est, work, name, newkey)
    # The device certificate authenticates the request: it asks for the device's own name.
    body = keygen_request(work, name, ASYMMETRIC_DECRYPT_KEY_ID, ski_of(device))
    login = ("--cert", str(device), "--key", str(work / f"{name}.key"))
    answer = curl(est.server, "device/serverkeygen", *login, body=body)
    assert answer.status == 200, answer.text
    parts = mime_parts(answer)
    assert set(parts) == {"server-generated-key", "certs-only"}
    enveloped = work / f"{name}.p7"
    enveloped.write_bytes(parts["server-generated-key"])
    signed = work / f"{name}.signed.der"
    device_key = str(work / f"{name}.key")
    run("openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(enveloped),
        "-recip", str(device), "-inkey", device_key, "-out", str(signed))  # fmt: skip
    # The decrypted content is a SignedData; openssl cms reads it inside a ContentInfo.
    content_info = work / f"{name}.ci.der"
    content_info.write_bytes(
        cms.ContentInfo(
            {"content_type": "signed_data", "content": cms.SignedData.load(signed.read_bytes())}
        ).dump()
    )
    package = work / f"{name}.pkg.der"
    run("openssl", "cms", "-verify", "-inform", "DER", "-in", str(content_info),
        "-CAfile", str(est.server.root), "-purpose", "any", "-out", str(package))  # fmt: skip
    # AsymmetricKeyPackage: SEQUENCE OF OneAsymmetricKey; the one element is the PKCS#8 key.
    first = run("openssl", "asn1parse", "-inform", "DER", "-in", str(package)).stdout
    header = int(first.split("hl=")[1].split()[0])
    key_der = work / f"{name}.genkey.der"
    key_der.write_bytes(package.read_bytes()[header:])
    key_pem = work / f"{name}.genkey.pem"
    run("openssl", "pkey", "-inform", "DER", "-in", str(key_der), "-out", str(key_pem))
    cert = Answer(200, {}, base64.b64encode(parts["certs-only"])).pkcs7_certs(work, f"{name}-c")
    assert public_key(cert, of="x509") == public_key(key_pem, of="key")


def test_encrypted_serverkeygen_refusals_record_nothing(est: EST, work: Path) -> None:
    device = device_with_ski(
        est, work, "enc-bad", ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
    )
    login = ("--cert", str(device), "--key", str(work / "enc-bad.key"))
    before = request_count(est.server)
    # §4.4.1.2: a key the server does not know "MUST terminate the request with an error".
    stranger = keygen_request(work, "stranger-key", ASYMMETRIC_DECRYPT_KEY_ID, b"\x01" * 20)
    assert curl(est.server, "device/serverkeygen", *login, body=stranger).status == 400
    # The same identifier without the certificate it names (Basic only): nothing to encrypt to.
    named = keygen_request(work, "no-cert", ASYMMETRIC_DECRYPT_KEY_ID, ski_of(device))
    assert curl(est.server, "serverkeygen", *est.basic, body=named).status == 400
    # §4.4.1.1, a symmetric key-encryption key: not offered.
    symmetric = keygen_request(work, "symmetric", DECRYPT_KEY_ID, b"kek-1")
    assert curl(est.server, "device/serverkeygen", *login, body=symmetric).status == 501
    assert request_count(est.server) == before


def make_sub_ca(files: Path, name: str) -> None:
    """An intermediate CA under the IDevID CA (openssl)."""
    ext = files / f"{name}.ext"
    ext.write_text("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(files / f"{name}.key"), "-out", str(files / f"{name}.csr"),
        "-subj", f"/O=Acme Devices/CN={name}")  # fmt: skip
    run("openssl", "x509", "-req", "-in", str(files / f"{name}.csr"),
        "-CA", str(files / "idevid-ca.pem"), "-CAkey", str(files / "idevid-ca.key"),
        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "365",
        "-extfile", str(ext), "-out", str(files / f"{name}.pem"))  # fmt: skip


def device_under(est: EST, work: Path, ca: str, name: str) -> tuple[str, ...]:
    """A device certificate issued by intermediate ``ca``; curl options that send it with
    its chain (device, intermediate), as a device would."""
    run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(work / f"{name}.key"), "-out", str(work / f"{name}.csr"),
        "-subj", f"/CN={name}")  # fmt: skip
    run("openssl", "x509", "-req", "-in", str(work / f"{name}.csr"),
        "-CA", str(est.files / f"{ca}.pem"), "-CAkey", str(est.files / f"{ca}.key"),
        "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "30",
        "-out", str(work / f"{name}.pem"))  # fmt: skip
    chain = work / f"{name}.chain.pem"
    chain.write_bytes((work / f"{name}.pem").read_bytes() + (est.files / f"{ca}.pem").read_bytes())
    return ("--cert", str(chain), "--key", str(work / f"{name}.key"))


def test_a_device_under_an_intermediate_listed_as_trust_anchor(est: EST, work: Path) -> None:
    """anchor -> intermediate -> device: accepted when the intermediate is in [est]
    trust_anchors; every certificate there is an anchor of its own."""
    login = device_under(est, work, "idevid-sub-ca", "sub-device")
    _, csr = make_csr(work, "sub-ldevid", subject="/CN=sub-device", sans="")
    answer = curl(est.server, "device/simpleenroll", *login, body=base64_request(csr))
    assert "CN = sub-device" in answer.pkcs7_certs(work, "sub-device-ldevid").read_text()


def test_an_intermediate_the_client_sends_links_it_to_an_anchor(est: EST, work: Path) -> None:
    """anchor -> intermediate (not listed, sent by the client with its certificate: curl sends
    the chain in its --cert file) -> device: accepted. Read through server.clientauth."""
    login = device_under(est, work, "idevid-unlisted-ca", "unlisted-device")
    _, csr = make_csr(work, "unlisted-ldevid", subject="/CN=unlisted-device", sans="")
    answer = curl(est.server, "device/simpleenroll", *login, body=base64_request(csr))
    assert "CN = unlisted-device" in answer.pkcs7_certs(work, "unlisted-ldevid").read_text()


def test_an_intermediate_sent_by_the_client_must_chain_to_an_anchor(est: EST, work: Path) -> None:
    """A CA the client made itself, sent along, does not make its device trusted."""
    key, ca = str(est.files / "rogue-ca.key"), str(est.files / "rogue-ca.pem")
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", key, "-out", ca, "-subj", "/CN=rogue CA", "-days", "30",
        "-addext", "basicConstraints=critical,CA:TRUE")  # fmt: skip
    login = device_under(est, work, "rogue-ca", "rogue-device")
    _, csr = make_csr(work, "rogue-ldevid", subject="/CN=rogue-device", sans="")
    answer = curl(est.server, "device/simpleenroll", *login, body=base64_request(csr))
    assert answer.status == 403
    assert "trust anchor" in answer.text
