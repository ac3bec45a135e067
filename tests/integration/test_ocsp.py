"""The OCSP responder of the real server, asked by ``openssl ocsp`` and curl (issue 3).

``openssl ocsp`` says good, then revoked with the reason right after ``certforge cert
revoke``; it sends a nonce by default and checks that the response echoes it and that the
delegated responder certificate chains to the root. GET (base64 in the path) carries RFC 5019
caching headers. Bad requests get OCSP error statuses, never an HTTP error. pkilint lints the
responses.
"""

from __future__ import annotations

import base64
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from asn1crypto import algos
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from tests.integration.openssl import make_csr
from tests.integration.revocation import issue, pkilint, serial_of, split_chain
from tests.integration.server import CertforgeServer, run

RESP = ocsp.OCSPResponseStatus


def openssl_ocsp(server: CertforgeServer, chain: Path, *args: str, check: bool = True) -> str:
    """``openssl ocsp`` about the chain's leaf; its output (stdout and stderr)."""
    leaf, issuing = split_chain(chain)
    cmd = ["openssl", "ocsp", "-issuer", str(issuing), "-cert", str(leaf)]
    cmd += ["-url", f"{server.http_url}/ocsp", "-CAfile", str(server.root), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd} failed ({out.returncode}):\n{out.stderr}")
    return out.stdout + out.stderr


def request_der(chain: Path, algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    certs = x509.load_pem_x509_certificates(chain.read_bytes())
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        certs[0],
        certs[1],
        algorithm or hashes.SHA1(),  # noqa: S303 - CertID, as clients send
    )
    return builder.build().public_bytes(Encoding.DER)


def post(server: CertforgeServer, body: bytes) -> tuple[int, dict[str, str], bytes]:
    return curl(
        server,
        "-X",
        "POST",
        "-H",
        "Content-Type: application/ocsp-request",
        "--data-binary",
        "@-",
        f"{server.http_url}/ocsp",
        stdin=body,
    )


def get(server: CertforgeServer, der: bytes) -> tuple[int, dict[str, str], bytes]:
    path = urllib.parse.quote(base64.b64encode(der).decode(), safe="")
    return curl(server, f"{server.http_url}/ocsp/{path}")


def curl(
    server: CertforgeServer, *args: str, stdin: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "-", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=True,
    )
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def test_good_then_revoked_with_reason(server: CertforgeServer, work: Path) -> None:
    serial, chain = issue(server, work, "ocsp-revokee")
    before = openssl_ocsp(server, chain)
    assert ": good" in before, before
    assert "Response verify OK" in before
    assert "WARNING" not in before  # openssl warns when the nonce is not echoed

    server.cli("cert", "revoke", serial, "--reason", "keyCompromise", check=True)
    after = openssl_ocsp(server, chain)

    assert ": revoked" in after, after
    assert "Reason: keyCompromise" in after
    assert "Revocation Time" in after
    assert "Response verify OK" in after


def test_hold_then_release(server: CertforgeServer, work: Path) -> None:
    serial, chain = issue(server, work, "ocsp-held")
    server.cli("cert", "revoke", serial, "--reason", "certificateHold", check=True)
    held = openssl_ocsp(server, chain, "-no_nonce")
    assert ": revoked" in held and "Reason: certificateHold" in held, held
    server.cli("cert", "release", serial, check=True)
    assert ": good" in openssl_ocsp(server, chain, "-no_nonce")


def test_get_has_rfc5019_caching_headers(server: CertforgeServer, work: Path) -> None:
    _, chain = issue(server, work, "ocsp-get")
    status, headers, body = get(server, request_der(chain))
    assert status == 200
    assert headers["Content-Type"] == "application/ocsp-response"
    cache_control = headers["Cache-Control"]
    assert "max-age=" in cache_control and "public" in cache_control
    assert {"Last-Modified", "Expires", "ETag"} <= headers.keys()
    response = ocsp.load_der_ocsp_response(body)
    assert response.response_status is RESP.SUCCESSFUL
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == serial_of(chain)
    assert response.next_update_utc is not None and response.this_update_utc is not None
    signer = response.certificates[0]
    eku = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.OCSP_SIGNING in eku
    assert signer.extensions.get_extension_for_class(x509.OCSPNoCheck).critical is False
    # The same request again is served from the cache: the same signed bytes.
    assert get(server, request_der(chain))[2] == body


def test_sha256_certid_is_answered_in_kind(server: CertforgeServer, work: Path) -> None:
    _, chain = issue(server, work, "ocsp-sha256")
    _, _, body = post(server, request_der(chain, hashes.SHA256()))
    response = ocsp.load_der_ocsp_response(body)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert isinstance(response.hash_algorithm, hashes.SHA256)


def test_unknown_serial_is_unknown(server: CertforgeServer, work: Path) -> None:
    _, chain = issue(server, work, "ocsp-unknown")
    _, issuing = split_chain(chain)
    out = run(
        "openssl",
        "ocsp",
        "-issuer",
        str(issuing),
        "-serial",
        "0x1234567",
        "-no_nonce",
        "-url",
        f"{server.http_url}/ocsp",
        "-CAfile",
        str(server.root),
    )
    assert "0x1234567: unknown" in out.stdout, out.stdout + out.stderr


def _foreign_chain(work: Path, chain: Path) -> Path:
    """The leaf with a CA this server never heard of standing in as its issuer."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone Else's CA")])
    leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
    foreign = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
        .sign(key, hashes.SHA256())
    )
    path = work / "foreign-chain.pem"
    path.write_bytes(leaf.public_bytes(Encoding.PEM) + foreign.public_bytes(Encoding.PEM))
    return path


def _asn1_request(chain: Path, *, algorithm: str = "sha1", count: int = 1) -> bytes:
    parsed = ocsp.load_der_ocsp_request(request_der(chain))
    cert_id = asn1_ocsp.CertId(
        {
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm}),
            "issuer_name_hash": parsed.issuer_name_hash,
            "issuer_key_hash": parsed.issuer_key_hash,
            "serial_number": parsed.serial_number,
        }
    )
    requests = [{"req_cert": cert_id}] * count
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": requests}}).dump())


@pytest.fixture(scope="module")
def chain(server: CertforgeServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return issue(server, tmp_path_factory.mktemp("ocsp-bad"), "ocsp-bad")[1]


BAD_REQUESTS = [
    pytest.param(lambda c: b"", RESP.MALFORMED_REQUEST, id="malformed/empty"),
    pytest.param(lambda c: b"\x30\x82garbage", RESP.MALFORMED_REQUEST, id="malformed/garbage"),
    pytest.param(lambda c: request_der(c)[:-5], RESP.MALFORMED_REQUEST, id="malformed/truncated"),
    pytest.param(lambda c: b"\x30" * 20_000, RESP.MALFORMED_REQUEST, id="malformed/oversized"),
    pytest.param(
        lambda c: _asn1_request(c, count=2), RESP.MALFORMED_REQUEST, id="malformed/two_requests"
    ),
    pytest.param(
        lambda c: _asn1_request(c, algorithm="md5"), RESP.UNAUTHORIZED, id="unauthorized/md5"
    ),
    pytest.param(
        lambda c: request_der(_foreign_chain(c.parent, c)),
        RESP.UNAUTHORIZED,
        id="unauthorized/another_ca",
    ),
]


@pytest.mark.parametrize(("make", "expected"), BAD_REQUESTS)
def test_bad_post_gets_an_ocsp_error_status(
    server: CertforgeServer, chain: Path, make: object, expected: ocsp.OCSPResponseStatus
) -> None:
    assert callable(make)
    status, headers, body = post(server, make(chain))
    assert status == 200
    assert headers["Content-Type"] == "application/ocsp-response"
    assert ocsp.load_der_ocsp_response(body).response_status is expected


@pytest.mark.parametrize("path", ["not*base64", "AAAA", "%00%01"])
def test_bad_get_is_malformed_request(server: CertforgeServer, path: str) -> None:
    status, _, body = curl(server, f"{server.http_url}/ocsp/{path}")
    assert status == 200
    assert ocsp.load_der_ocsp_response(body).response_status is RESP.MALFORMED_REQUEST


def test_openssl_reports_another_cas_certificate_unauthorized(
    server: CertforgeServer, chain: Path
) -> None:
    out = openssl_ocsp(server, _foreign_chain(chain.parent, chain), check=False)
    assert "unauthorized" in out


def test_responses_lint_clean(server: CertforgeServer, work: Path) -> None:
    serial, chain = issue(server, work, "ocsp-lint")
    good = work / "good.ocsp"
    good.write_bytes(post(server, request_der(chain))[2])
    server.cli("cert", "revoke", serial, "--reason", "superseded", check=True)
    revoked = work / "revoked.ocsp"
    revoked.write_bytes(post(server, request_der(chain))[2])
    assert ocsp.load_der_ocsp_response(revoked.read_bytes()).certificate_status is (
        ocsp.OCSPCertStatus.REVOKED
    )

    for path in (good, revoked):
        findings = pkilint("lint_ocsp_response", path)
        print(path.name, *findings, sep="\n")
        assert [f for f in findings if "ERROR" in f or "FATAL" in f] == []


CRL_ONLY = """
[[ca.issuers]]
name = "default"

[[ca.issuers]]
name = "crlonly"

[profiles.device]
issuer = "crlonly"

[ocsp]
disabled_issuers = ["crlonly"]
"""


def test_ocsp_switched_off_for_one_ca(tmp_path: Path) -> None:
    """A CRL-only CA: its certificates name no OCSP responder, and the responder declines."""
    server = CertforgeServer(tmp_path / "data", extra_config=CRL_ONLY)
    server.start()
    try:
        token = server.cli("token", "create", "crlonly", check=True).stdout.strip()
        _, csr = make_csr(tmp_path, "device", subject="/CN=device-1", sans="DNS:device-1.test")
        chain = tmp_path / "device.pem"
        rid = server.cli(
            "request",
            "submit",
            str(csr),
            "--profile",
            "device",
            token=token,
            admin=False,
            check=True,
        ).stdout.split()[0]
        server.cli("request", "get", rid, "--out", str(chain), check=True)
        leaf = x509.load_pem_x509_certificates(chain.read_bytes())[0]
        aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        methods = {d.access_method for d in aia}

        assert AuthorityInformationAccessOID.OCSP not in methods
        assert AuthorityInformationAccessOID.CA_ISSUERS in methods
        _, _, body = post(server, request_der(chain))
        assert ocsp.load_der_ocsp_response(body).response_status is RESP.UNAUTHORIZED
    finally:
        assert server.stop() == 0


def test_responder_certificate_lints_clean(server: CertforgeServer, work: Path) -> None:
    """The delegated OCSP signing certificate against pkilint's CA/B Forum OCSP responder
    profile: no CRL distribution point, no AIA. certforge's CA names carry no countryName
    (only [ca] name), which that profile wants of every CA-related subject: that one finding
    is the CA hierarchy's, not the responder's, and is left out."""
    _, chain = issue(server, work, "ocsp-responder")
    body = post(server, request_der(chain))[2]
    signer = ocsp.load_der_ocsp_response(body).certificates[0]
    path = work / "responder.pem"
    path.write_bytes(signer.public_bytes(Encoding.PEM))

    findings = pkilint("lint_cabf_serverauth_cert", path, "-t", "OCSP-RESPONDER")
    print(*findings, sep="\n")
    errors = [f for f in findings if "ERROR" in f or "FATAL" in f]
    assert errors == ["    cabf.serverauth.ca.country_attribute_absent (ERROR)"]
    assert pkilint("lint_pkix_cert", path) == []
    with pytest.raises(x509.ExtensionNotFound):
        signer.extensions.get_extension_for_class(x509.CRLDistributionPoints)
