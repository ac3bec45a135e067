"""Bad input to the REST and admin APIs: a clear 4xx problem document, never a 500, and
nothing recorded half-way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type

from tests.integration.openssl import make_csr
from tests.integration.scep_http import errors_logged, log_size
from tests.integration.server import CertforgeServer, run
from tests.unit.ca.helpers import csr_with_raw_dns_name


def post(
    server: CertforgeServer, path: str, data: bytes | str, *headers: str
) -> tuple[int, dict[str, object], str]:
    body_file = Path(server.data_dir.parent / "body.bin")
    body_file.write_bytes(data if isinstance(data, bytes) else data.encode())
    args = ["-X", "POST", "--data-binary", f"@{body_file}", "-D", "-", f"{server.url}{path}"]
    for h in headers:
        args[:0] = ["-H", h]
    out = server.curl(*args).stdout.decode(errors="replace")
    head, _, body = out.partition("\r\n\r\n")
    while head.startswith("HTTP/1.1 100"):
        head, _, body = body.partition("\r\n\r\n")
    status = int(head.split()[1])
    return status, json.loads(body) if body.startswith("{") else {}, head


def request_count(server: CertforgeServer) -> int:
    out = server.cli("request", "list", "--json", check=True).stdout
    return len(json.loads(out)["requests"])


PKCS10 = "Content-Type: application/pkcs10"


@pytest.fixture
def good_csr(work: Path) -> bytes:
    return make_csr(work, "good")[1].read_bytes()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        pytest.param(b"garbage", "bad_csr", id="bad_csr/garbage"),
        pytest.param(
            b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----",
            "bad_csr",
            id="bad_csr/truncated_pem",
        ),
        pytest.param(b"\x30\x82\x01\x00\x30", "bad_csr", id="bad_csr/truncated_der"),
    ],
)
def test_malformed_csr(server: CertforgeServer, body: bytes, kind: str) -> None:
    before = request_count(server)
    status, problem, head = post(server, "/api/v1/requests", body, PKCS10)
    assert status == 400
    assert problem["type"] == f"urn:certforge:problem:{kind}"
    assert "application/problem+json" in head
    assert request_count(server) == before


def test_bad_signature_is_refused(server: CertforgeServer, work: Path) -> None:
    _, csr = make_csr(work, "sig")
    run("openssl", "req", "-in", str(csr), "-outform", "DER", "-out", str(work / "sig.der"))
    der = bytearray((work / "sig.der").read_bytes())
    der[-5] ^= 0x01  # flip a bit inside the signature
    status, problem, _ = post(server, "/api/v1/requests", bytes(der), PKCS10)
    assert status == 400
    assert problem["type"] == "urn:certforge:problem:bad_csr"


def test_weak_key_is_refused(server: CertforgeServer, work: Path) -> None:
    _, csr = make_csr(work, "weak", key="rsa1024")
    before = request_count(server)
    status, problem, _ = post(server, "/api/v1/requests", csr.read_bytes(), PKCS10)
    assert status == 400
    assert problem["type"] == "urn:certforge:problem:bad_public_key"
    assert request_count(server) == before


def test_unknown_profile(server: CertforgeServer, good_csr: bytes) -> None:
    body = json.dumps({"csr": good_csr.decode(), "profile": "nope"})
    status, problem, _ = post(server, "/api/v1/requests", body, "Content-Type: application/json")
    assert status == 400
    assert problem["type"] == "urn:certforge:problem:unknown_profile"


def test_oversized_body(server: CertforgeServer) -> None:
    status, problem, _ = post(server, "/api/v1/requests", b"0" * 200_000, PKCS10)
    assert status == 413
    assert problem["status"] == 413


def test_wrong_content_type(server: CertforgeServer, good_csr: bytes) -> None:
    status, problem, _ = post(server, "/api/v1/requests", good_csr, "Content-Type: text/plain")
    assert status == 415
    assert problem["type"] == "urn:certforge:problem:unsupported_media_type"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{", id="malformed/not_json"),
        pytest.param("[]", id="malformed/not_object"),
        pytest.param('{"csr": 5}', id="malformed/csr_not_string"),
        pytest.param('{"csr": "x", "profile": 3}', id="malformed/profile_not_string"),
    ],
)
def test_bad_json(server: CertforgeServer, body: str) -> None:
    status, problem, _ = post(server, "/api/v1/requests", body, "Content-Type: application/json")
    assert status == 400
    assert str(problem["type"]).startswith("urn:certforge:problem:")


def test_bad_token(server: CertforgeServer, good_csr: bytes) -> None:
    status, problem, head = post(
        server, "/api/v1/requests", good_csr, PKCS10, "Authorization: Bearer nope"
    )
    assert status == 401
    assert problem["type"] == "urn:certforge:problem:unauthorized"
    assert "WWW-Authenticate: Bearer" in head


def test_admin_needs_a_token(server: CertforgeServer) -> None:
    result = server.curl(
        "-o", "/dev/null", "-w", "%{http_code}", f"{server.url}/api/v1/admin/requests"
    )
    assert result.stdout == b"401"


def test_wrong_role(server: CertforgeServer, good_csr: bytes) -> None:
    auditor = server.cli(
        "token", "create", "auditor", "--role", "auditor", check=True
    ).stdout.strip()
    assert server.cli("request", "list", token=auditor).returncode == 0
    submitted = server.curl(
        "-X",
        "POST",
        "-H",
        PKCS10,
        "--data-binary",
        good_csr.decode(),
        f"{server.url}/api/v1/requests",
    )
    rid = json.loads(submitted.stdout)["id"]
    refused = server.cli("request", "approve", rid, token=auditor)
    assert refused.returncode == 1
    assert "administrator" in refused.stderr
    status, problem, _ = post(
        server, f"/api/v1/admin/requests/{rid}/approve", b"{}", f"Authorization: Bearer {auditor}"
    )
    assert status == 403
    assert problem["type"] == "urn:certforge:problem:forbidden"


def test_unknown_request_and_serial(server: CertforgeServer) -> None:
    got = server.cli("request", "get", "0" * 32)
    assert got.returncode == 1
    assert "HTTP 404" in got.stderr
    revoke = server.cli("cert", "revoke", "de:ad:be:ef")
    assert revoke.returncode == 1
    bad = server.cli("cert", "revoke", "not-hex")
    assert bad.returncode == 1


def test_usage_errors_exit_2(server: CertforgeServer) -> None:
    assert server.cli("request").returncode == 2
    assert server.cli("cert", "revoke", "01", "--reason", "whim").returncode == 2


def test_a_store_that_cannot_open_stops_the_start_in_one_line(tmp_path: Path) -> None:
    """A file that is not an SQLite database (or, for MongoDB, an unreachable server: see the
    store's unit tests) ends the start with exit 1 and one line, never a traceback."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "certforge.db").write_bytes(b"not a database at all, not even close\n" * 4)
    server = CertforgeServer(data)
    with pytest.raises(RuntimeError, match="exited with 1") as refused:
        server.start(timeout=30)
    assert "cannot open the SQLite store" in str(refused.value)
    assert "Traceback" not in str(refused.value)


@pytest.mark.parametrize(
    ("listener", "path", "ctype", "answer"),
    [
        pytest.param("https", "/api/v1/requests", PKCS10, 400, id="rest"),
        pytest.param(
            "https", "/api/v1/admin/tokens", "Content-Type: application/json", 400, id="admin"
        ),
        pytest.param("https", "/.well-known/est/simpleenroll", PKCS10, {400, 401}, id="est"),
        pytest.param(
            "https", "/acme/new-order", "Content-Type: application/jose+json", 400, id="acme"
        ),
        pytest.param(
            "http",
            "/scep?operation=PKIOperation",
            "Content-Type: application/x-pki-message",
            400,
            id="scep",
        ),
        pytest.param("http", "/ocsp", "Content-Type: application/ocsp-request", 200, id="ocsp"),
    ],
)
def test_a_body_whose_content_encoding_does_not_decode_is_the_clients_error(
    server: CertforgeServer, listener: str, path: str, ctype: str, answer: int | set[int]
) -> None:
    """aiohttp decodes gzip/deflate/br bodies as they are read; a broken one was a 500 and two
    error tracebacks in every front end (OCSP: internalError)."""
    assert server.log_path is not None
    offset = server.log_path.stat().st_size
    base = server.url if listener == "https" else server.http_url
    body = server.data_dir.parent / "deflate.bin"
    body.write_bytes(b"\x78\x9c not deflate at all " * 8)
    out = server.curl(
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-H",
        ctype,
        "-H",
        "Content-Encoding: deflate",
        "-H",
        f"Authorization: Bearer {server.token}",
        "--data-binary",
        f"@{body}",
        f"{base}{path}",
    )
    text = out.stdout.decode(errors="replace")
    status = int(text.rsplit("\n", 1)[1])
    assert status in (answer if isinstance(answer, set) else {answer}), text
    if path == "/ocsp":  # OCSPResponseStatus malformedRequest (1), not internalError (2)
        assert out.stdout.startswith(b"\x30\x03\x0a\x01\x01")
    with server.log_path.open("rb") as log:
        log.seek(offset)
        logged = log.read().decode(errors="replace")
    assert '"level": "error"' not in logged
    assert "Traceback" not in logged


def test_a_dns_name_that_is_not_ascii_is_refused_not_rewritten(server: CertforgeServer) -> None:
    """RFC 5280 §4.2.1.6: a dNSName is ASCII (IDNs as A-labels); a request naming
    "\u212aelvin.example.com" (KELVIN SIGN, UTF-8) was issued as DNS:kelvin.example.com."""
    before = request_count(server)
    der = csr_with_raw_dns_name("\u212aelvin.example.com".encode())
    token = server.cli("token", "create", "kelvin", check=True).stdout.strip()
    status, problem, _ = post(
        server, "/api/v1/requests", der, PKCS10, f"Authorization: Bearer {token}"
    )
    assert (status, problem.get("type")) == (400, "urn:certforge:problem:bad_csr"), problem
    assert request_count(server) == before


LONG_NAME = "a" * 63 + ".example.com"  # a valid DNS name, 75 characters: over a CN's 64


def subject_csr(attrs: list[tuple[str, str]], sans: tuple[str, ...] = ()) -> bytes:
    """A request with a subject cryptography would refuse to build, as other clients write
    it (UTF8String throughout, no length check)."""
    name = x509.Name(
        [
            x509.NameAttribute(x509.ObjectIdentifier(o), v, _ASN1Type.UTF8String, _validate=False)
            for o, v in attrs
        ]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in sans])
        builder = builder.add_extension(san, critical=False)
    key = ec.generate_private_key(ec.SECP256R1())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


UNCARRIABLE_SUBJECTS = [
    pytest.param([("2.5.4.3", "x" * 65)], ("x.example.com",), id="bad_csr/cn_over_64"),
    pytest.param([("2.5.4.3", "")], ("e.example.com",), id="bad_csr/empty_cn"),
    pytest.param(
        [("2.5.4.3", "sn.example.com"), ("2.5.4.5", "SN_1")],
        ("sn.example.com",),
        id="bad_csr/serial_number_not_printable",
    ),
]


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
@pytest.mark.parametrize(("attrs", "sans"), UNCARRIABLE_SUBJECTS)
@pytest.mark.parametrize("auth", ["token", "anonymous"])
def test_a_subject_no_certificate_can_carry_is_a_bad_csr(
    server: CertforgeServer, attrs: list[tuple[str, str]], sans: tuple[str, ...], auth: str
) -> None:
    """It was a 500 with a traceback when signed (token), or held and then failed at
    approval (anonymous)."""
    headers = [PKCS10]
    if auth == "token":
        token = server.cli("token", "create", "req", "--role", "requester", check=True)
        headers.append(f"Authorization: Bearer {token.stdout.strip()}")
    before, since = request_count(server), log_size(server)
    status, problem, _ = post(server, "/api/v1/requests", subject_csr(attrs, sans), *headers)
    assert status == 400, problem
    assert problem["type"] == "urn:certforge:problem:bad_csr"
    assert request_count(server) == before
    assert errors_logged(server, since) == []


@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")
def test_a_cn_over_64_characters_that_is_a_san_is_dropped(
    server: CertforgeServer, work: Path
) -> None:
    """As Boulder does: the SAN carries the name (a 500 on the old code)."""
    token = server.cli("token", "create", "req", "--role", "requester", check=True)
    auth = f"Authorization: Bearer {token.stdout.strip()}"
    csr = subject_csr([("2.5.4.3", LONG_NAME)], (LONG_NAME,))
    status, body, _ = post(server, "/api/v1/requests", csr, PKCS10, auth)
    assert status == 201, body
    pem = work / "long.pem"
    server.cli("request", "get", str(body["id"]), "--out", str(pem), check=True)
    text = run("openssl", "x509", "-in", str(pem), "-noout", "-subject", "-ext", "subjectAltName")
    assert f"DNS:{LONG_NAME}" in text.stdout
    assert "CN" not in text.stdout.splitlines()[0]
