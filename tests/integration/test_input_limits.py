"""Input past the server's limits, against the real server: JSON nested 1,000 and 25,000
deep (arrays and objects) to every endpoint that reads JSON, also inside an ACME JWS's
protected header and signed payload; JSON outside what every parser reads alike; a URL, a
header and a bearer token of 9,000 bytes on both listeners. Each is the client's error in
its protocol's format; afterwards the log holds nothing at error level and the store holds
nothing new (both checked after every test)."""

from __future__ import annotations

import json
import socket
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.server import CertforgeServer
from tests.interop.acme.client import Client, alg_of, b64, jwk_of, sign

ACME_MALFORMED = "urn:ietf:params:acme:error:malformed"
REST_MALFORMED = "urn:certforge:problem:malformed"
JOSE = "application/jose+json"


def nested(levels: int, *, objects: bool = False) -> bytes:
    opening, closing = (b'{"a":', b"}") if objects else (b"[", b"]")
    return opening * levels + b"0" + closing * levels


DEPTHS = [
    pytest.param(nested(1000), id="arrays_1000"),
    pytest.param(nested(25_000), id="arrays_25000"),
    pytest.param(nested(1000, objects=True), id="objects_1000"),
    pytest.param(nested(25_000, objects=True), id="objects_25000"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    # Bodies up to 1 MiB, so that 25,000 nested objects (150 kB) reach the JSON reader
    # rather than the body limit.
    srv = CertforgeServer(
        tmp_path_factory.mktemp("limits") / "data", extra_config="max_body_bytes = 1048576\n"
    )
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def _records(server: CertforgeServer) -> dict[str, int]:
    """Rows per table and documents per kind; used nonces are the protocol's bookkeeping."""
    db = sqlite3.connect(f"file:{server.data_dir / 'certforge.db'}?mode=ro", uri=True)
    try:
        counts = {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in ("requests", "certificates", "events")
        }
        kinds = db.execute(
            "SELECT kind, count(*) FROM documents WHERE kind != 'acme-nonce' GROUP BY kind"
        )
        counts |= {f"documents/{kind}": n for kind, n in kinds}
    finally:
        db.close()
    return counts


@pytest.fixture(scope="module")
def acme(server: CertforgeServer) -> Client:
    """A registered ACME account (made before any test's records are counted)."""
    client = Client(f"{server.url}/acme/directory", server.ssl_context())
    assert client.register().status == 201
    return client


@pytest.fixture(autouse=True)
def nothing_logged_or_recorded(server: CertforgeServer, acme: Client) -> Iterator[None]:
    """After each test: no line at error level or above, no record made."""
    assert server.log_path is not None
    start, before = server.log_path.stat().st_size, _records(server)
    yield
    with server.log_path.open("rb") as log:
        log.seek(start)
        lines = log.read().decode(errors="replace").splitlines()
    errors = [x for x in lines if '"level": "error"' in x or '"level": "critical"' in x]
    assert not errors, errors[:2]
    assert _records(server) == before


def _post(server: CertforgeServer, path: str, body: bytes, **headers: str) -> tuple[int, Any]:
    """The status and the problem document of a refused POST (or a success's body)."""
    request = urllib.request.Request(server.url + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, context=server.ssl_context(), timeout=30) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            status, ctype, raw = exc.code, exc.headers["Content-Type"], exc.read()
    assert ctype.startswith("application/problem+json"), raw[:200]
    return status, json.loads(raw)


REST_JSON = [
    pytest.param("/api/v1/requests", False, id="rest/requests_without_token"),
    pytest.param("/api/v1/admin/tokens", True, id="admin/tokens"),
    pytest.param("/api/v1/admin/est/users", True, id="admin/est_users"),
    pytest.param("/api/v1/admin/scep/challenges", True, id="admin/scep_challenges"),
    pytest.param("/api/v1/admin/crl/publish", True, id="admin/crl_publish"),
    pytest.param("/api/v1/admin/requests/0/deny", True, id="admin/deny"),
    pytest.param("/api/v1/admin/certificates/ff/revoke", True, id="admin/revoke"),
    pytest.param("/api/v1/admin/acme/renewal", True, id="admin/acme_renewal"),
]


@pytest.mark.parametrize("body", DEPTHS)
@pytest.mark.parametrize(("path", "admin"), REST_JSON)
def test_nested_json_to_the_rest_and_admin_apis(
    server: CertforgeServer, path: str, admin: bool, body: bytes
) -> None:
    auth = {"Authorization": f"Bearer {server.token}"} if admin else {}
    status, problem = _post(server, path, body, **{"Content-Type": "application/json"}, **auth)
    assert (status, problem["type"]) == (400, REST_MALFORMED), problem


@pytest.mark.parametrize("body", DEPTHS)
@pytest.mark.parametrize("resource", ["newAccount", "newOrder", "revokeCert", "keyChange"])
def test_nested_json_as_an_acme_body(
    server: CertforgeServer, acme: Client, resource: str, body: bytes
) -> None:
    url = acme.directory[resource]
    status, problem = _post(server, url.removeprefix(server.url), body, **{"Content-Type": JOSE})
    assert (status, problem["type"]) == (400, ACME_MALFORMED), problem


def _signed(acme: Client, url: str, protected: bytes, payload: bytes) -> bytes:
    """A flattened JWS over raw header and payload bytes (the test client's ``jws`` takes
    Python values, which json.dumps cannot nest 25,000 deep)."""
    p64, b = b64(protected), b64(payload)
    signature = b64(sign(acme.key, alg_of(acme.key), f"{p64}.{b}".encode()))
    return json.dumps({"protected": p64, "payload": b, "signature": signature}).encode()


def _header(acme: Client, url: str, *, use_jwk: bool) -> dict[str, Any]:
    key = {"jwk": jwk_of(acme.key)} if use_jwk else {"kid": acme.kid}
    return {"alg": alg_of(acme.key), "nonce": acme.nonce(), "url": url, **key}


@pytest.mark.parametrize("deep", DEPTHS)
def test_nested_json_in_the_protected_header(
    server: CertforgeServer, acme: Client, deep: bytes
) -> None:
    url = acme.directory["newAccount"]
    header = json.dumps(_header(acme, url, use_jwk=True)).encode()
    protected = header[:-1] + b', "x": ' + deep + b"}"
    body = _signed(acme, url, protected, b'{"termsOfServiceAgreed": true}')
    status, problem = _post(server, url.removeprefix(server.url), body, **{"Content-Type": JOSE})
    assert (status, problem["type"]) == (400, ACME_MALFORMED), problem


@pytest.mark.parametrize("deep", DEPTHS)
@pytest.mark.parametrize("resource", ["newAccount", "newOrder", "keyChange"])
def test_nested_json_in_the_signed_payload(
    server: CertforgeServer, acme: Client, resource: str, deep: bytes
) -> None:
    url = acme.directory[resource]
    header = json.dumps(_header(acme, url, use_jwk=resource == "newAccount")).encode()
    body = _signed(acme, url, header, deep)
    status, problem = _post(server, url.removeprefix(server.url), body, **{"Content-Type": JOSE})
    assert (status, problem["type"]) == (400, ACME_MALFORMED), problem


ODD_JSON = [
    pytest.param(b'{"name": "a", "name": "b"}', id="duplicate_member"),
    pytest.param(b'{"name": NaN}', id="nan"),
    pytest.param(b'{"name": 1e400}', id="float_overflow"),
    pytest.param(b'{"name": 1' + b"0" * 5000 + b"}", id="integer_of_5000_digits"),
    pytest.param(b'{"name": "\xe9"}', id="latin1"),
    pytest.param('{"name": "x"}'.encode("utf-16"), id="utf16"),
    pytest.param(rb'{"name": "\udc80"}', id="lone_surrogate"),
    pytest.param(b'["name"]', id="not_an_object"),
]


@pytest.mark.parametrize("body", ODD_JSON)
@pytest.mark.parametrize(
    "path", ["/api/v1/admin/tokens", "/api/v1/admin/est/users", "/api/v1/requests"]
)
def test_json_outside_what_every_parser_reads_alike(
    server: CertforgeServer, path: str, body: bytes
) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    status, problem = _post(server, path, body, **{"Content-Type": "application/json"}, **auth)
    assert (status, problem["type"]) == (400, REST_MALFORMED), problem


@pytest.mark.parametrize("seconds", [2**53 - 1, -(2**53 - 1), 10**12, 0])
def test_a_challenge_lifetime_beyond_any_time(server: CertforgeServer, seconds: int) -> None:
    body = json.dumps({"lifetime_seconds": seconds}).encode()
    status, problem = _post(
        server,
        "/api/v1/admin/scep/challenges",
        body,
        **{"Content-Type": "application/json", "Authorization": f"Bearer {server.token}"},
    )
    assert (status, problem["type"]) == (400, REST_MALFORMED), problem


BIG = "b" * 9000
HEADS = [
    pytest.param(f"GET /{BIG} HTTP/1.1\r\nHost: x\r\n\r\n", id="url"),
    pytest.param(f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {BIG}\r\n\r\n", id="header"),
    pytest.param(
        f"GET /api/v1/admin/requests HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BIG}\r\n\r\n",
        id="bearer_token",
    ),
]


def _raw_status(server: CertforgeServer, *, https: bool, head: str) -> int:
    port = server.https_port if https else server.http_port
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    if https:  # the TLS socket takes the descriptor over (closing it closes both)
        conn = server.ssl_context().wrap_socket(conn, server_hostname="127.0.0.1")
    with conn:
        conn.sendall(head.encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("https", [True, False], ids=["https", "http"])
@pytest.mark.parametrize("head", HEADS)
def test_an_oversized_head_is_one_info_line(
    server: CertforgeServer, https: bool, head: str
) -> None:
    assert server.log_path is not None
    start = server.log_path.stat().st_size
    assert _raw_status(server, https=https, head=head) in (400, 414, 431)
    # The server logs before it answers, so the line is in the file once the answer is read.
    with server.log_path.open("rb") as log:
        log.seek(start)
        lines = log.read().decode(errors="replace").splitlines()
    assert len(lines) == 1, lines
    assert '"level": "info"' in lines[0]
    assert "refused a request head" in lines[0]
    assert BIG[:50] not in lines[0]


MALFORMED_HEADS = [
    pytest.param(
        "POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        id="bad_chunk_size",
    ),
    pytest.param(
        "POST /api/v1/requests HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        id="content_length_and_chunked",
    ),
    pytest.param("GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", id="space_in_name"),
    pytest.param("G(T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", id="bad_method"),
    pytest.param("GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", id="nul_in_value"),
    pytest.param("GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", id="obs_fold"),
    pytest.param("GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", id="http_9_9"),
    pytest.param(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + "".join(f"X-{i}: v\r\n" for i in range(200))
        + "\r\n",
        id="200_headers",
    ),
]


@pytest.mark.parametrize("https", [True, False], ids=["https", "http"])
@pytest.mark.parametrize("head", MALFORMED_HEADS)
def test_a_malformed_head_is_a_4xx_and_no_error_log(
    server: CertforgeServer, https: bool, head: str
) -> None:
    """Each was a 400 with aiohttp's 'Error handling request' at error level."""
    assert server.log_path is not None
    start = server.log_path.stat().st_size
    status = _raw_status(server, https=https, head=head)
    assert 400 <= status < 500 or status == 505
    with server.log_path.open("rb") as log:
        log.seek(start)
        logged = log.read().decode(errors="replace")
    assert '"level": "error"' not in logged
    assert "Traceback" not in logged
