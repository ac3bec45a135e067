"""A request carrying one of certforge's own keys is refused by every front end.

The keys are the root and issuing CAs', the OCSP signer's, the SCEP RA's and the HTTPS
listener's, all read from the server's data directory (``server/ca/issuers.py``,
``server/revocation/signers.py``, ``protocols/scep/ra.py``, ``server/tls.py`` name the files).
Each refusal is the protocol's bad-key answer, records nothing, spends no one-time challenge
and logs nothing at error level. (ACME's finalize is in ``tests/interop/acme``, which has the
validation it needs.)
"""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.parse
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from server.ca.keystore import read_key
from tests.integration.est_client import curl
from tests.integration.scep_http import new_challenge, pki_operation, scep_ca, scep_url
from tests.integration.server import CertforgeServer
from tests.scep_client import Message, MessageType, read_cert_rep, rsa_key, self_signed
from tests.scep_client import make_csr as make_scep_csr

SUCCESS, FAILURE, BAD_REQUEST = "0", "2", "2"
OwnKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# Where each of certforge's own keys is kept in the data directory.
OWN_KEY_FILES = {
    "root": "ca/root.key.pem",
    "issuing_ca": "ca/default.key.pem",
    "ocsp_signer": "ocsp/default.key.pem",
    "scep_ra": "scep/ra-default.key",
    "tls": "tls/server.key",
}


def own_key(server: CertforgeServer, which: str) -> OwnKey:
    if which == "scep_ra":
        scep_ca(scep_url(server))  # the RA is made on the first SCEP request
    key = read_key(server.data_dir / OWN_KEY_FILES[which], None)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey), which
    return key


def csr_with(key: OwnKey, name: str) -> bytes:
    """A well-formed request for ``name``, signed (proof of possession) with ``key``."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )


def key_sha256(key: OwnKey) -> str:
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def admin_get(server: CertforgeServer, path: str) -> dict[str, list[object]]:
    out = server.curl("-H", f"Authorization: Bearer {server.token}", f"{server.url}{path}")
    return dict(json.loads(out.stdout))


def certificates_of(server: CertforgeServer, key: OwnKey) -> list[object]:
    path = f"/api/v1/admin/certificates?key_sha256={key_sha256(key)}"
    return admin_get(server, path)["certificates"]


def requests_named(server: CertforgeServer, name: str) -> list[object]:
    path = f"/api/v1/admin/requests?subject={urllib.parse.quote(name)}"
    return admin_get(server, path)["requests"]


def log_offset(server: CertforgeServer) -> int:
    assert server.log_path is not None
    return server.log_path.stat().st_size


def errors_logged_since(server: CertforgeServer, offset: int) -> list[str]:
    assert server.log_path is not None
    with server.log_path.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode(errors="replace").splitlines()
    return [line for line in lines if '"level": "error"' in line or '"level": "critical"' in line]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.example.test"


@pytest.mark.parametrize("which", list(OWN_KEY_FILES))
def test_rest_refuses_a_request_for_an_own_key(server: CertforgeServer, which: str) -> None:
    key, name, offset = own_key(server, which), unique(f"own-{which}"), log_offset(server)
    before = certificates_of(server, key)  # the OCSP, RA and TLS keys have certforge's own
    token = server.cli("token", "create", f"own-{which}", check=True).stdout.strip()
    body = server.data_dir.parent / f"own-{which}.der"
    body.write_bytes(csr_with(key, name))
    out = server.curl(
        "-X",
        "POST",
        "-H",
        f"Authorization: Bearer {token}",
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        f"@{body}",
        "-w",
        "\n%{http_code}",
        f"{server.url}/api/v1/requests",
    )
    text, _, status = out.stdout.decode().rpartition("\n")
    assert status == "400", text
    assert json.loads(text)["type"] == "urn:certforge:problem:bad_public_key"
    assert requests_named(server, name) == []
    assert certificates_of(server, key) == before
    assert errors_logged_since(server, offset) == []


def test_est_refuses_the_issuing_ca_key_and_keeps_the_challenge(
    server: CertforgeServer, work: Path
) -> None:
    key, name, offset = own_key(server, "issuing_ca"), unique("own-est"), log_offset(server)
    challenge = new_challenge(server)  # a one-time password, as EST's Basic password
    refused = work / "refused.b64"
    refused.write_bytes(base64.encodebytes(csr_with(key, name)))
    answer = curl(server, "simpleenroll", "-u", f"device:{challenge}", body=refused)
    assert answer.status == 400, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert requests_named(server, name) == []
    assert certificates_of(server, key) == []
    # The challenge was not spent on the refused request: a good one still enrolls with it.
    good = work / "good.b64"
    good.write_bytes(base64.encodebytes(csr_with(ec.generate_private_key(ec.SECP256R1()), name)))
    assert curl(server, "simpleenroll", "-u", f"device:{challenge}", body=good).status == 200
    assert errors_logged_since(server, offset) == []


def test_scep_refuses_the_ra_key_and_keeps_the_challenge(server: CertforgeServer) -> None:
    """SCEP signs with RSA and a PKCSReq's signer must hold the CSR's key (RFC 8894 §2.3), so
    of certforge's own keys the RSA one, the RA's, is what a SCEP request could carry."""
    key, cn, offset = own_key(server, "scep_ra"), unique("own-scep"), log_offset(server)
    _, recipient = scep_ca(scep_url(server))
    challenge = new_challenge(server)

    def pkcs_req(csr_key: rsa.RSAPrivateKey) -> tuple[bytes, x509.Certificate]:
        signer = self_signed(csr_key, cn)
        message = Message(
            message_type=MessageType.PKCS_REQ,
            content=make_scep_csr(csr_key, cn, challenge=challenge),
            recipient=recipient,
            signer_cert=signer,
            signer_key=csr_key,
        ).build()
        return message, signer

    assert isinstance(key, rsa.RSAPrivateKey)
    ra_certificates = certificates_of(server, key)  # the RA's own
    message, _ = pkcs_req(key)
    refused = read_cert_rep(pki_operation(scep_url(server), message).body)
    assert (refused.status, refused.fail_info) == (FAILURE, BAD_REQUEST)
    assert requests_named(server, cn) == []
    assert certificates_of(server, key) == ra_certificates
    # The challenge was not spent: the same challenge enrolls a key of the device's own.
    device_key = rsa_key()
    message, signer = pkcs_req(device_key)
    good = pki_operation(scep_url(server), message)
    assert read_cert_rep(good.body, key=device_key, cert=signer).status == SUCCESS
    assert errors_logged_since(server, offset) == []
