"""The OpenAPI document (``protocols/openapi``) against the running server, with schemathesis:
every operation under ``/api/v1`` is called with generated input, valid and invalid, and
every answer must be no server error and be described by the document: its status, its
Content-Type, its body's schema and its headers.

How it is driven, and why:

* The cases come from the document the server serves (``test_served_document_is_the_built_one``
  checks that it is ``protocols.openapi.document()``), one pytest test per operation, each a
  Hypothesis test over ``APIOperation.as_strategy``. schemathesis's lazy pytest loader
  (``schemathesis.pytest.from_fixture``) sets ``Node._nodeid``, which pytest 9.2 no longer
  has, so it cannot be used here.
* Every call carries the administrator's bearer token (``admin.token``): the point is to
  reach the handlers, and a token-less call stops at the 401. The REST submission, which
  may be anonymous, is sent without it half of the time.
* The server is seeded first (pending and issued requests, a token, an EST user), and the
  path parameters are drawn from those records half of the time, so approve, deny, revoke,
  release, the token revocation and the user removal act on real records, not only on 404s.
* Times are drawn with the edges of RFC 3339 and of Python's datetime (years 1 and 9999,
  offsets of almost a day), where schemathesis's own date-time strategy seldom goes.

The server is this module's own: the run revokes, denies, creates tokens and users, which
would change what other tests see on the shared one. ``POST /admin/tokens/bootstrap/rotate``
is left out of the generated run: it rewrites ``admin.token`` and revokes the token it held,
the one every later call authenticates with. ``test_rotate_bootstrap_conforms`` calls it,
on a server of its own. For the same reason ``POST /admin/tokens/{ref}/revoke`` is never
given the run's own token (its id or its name).

Bounded by ``MAX_EXAMPLES`` an operation, with no deadline (a shared 2-core machine), so that
the whole module takes well under two minutes.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from protocols.openapi import document
from tests.integration.server import CertforgeServer
from tests.unit.factories import make_csr

MAX_EXAMPLES = 100
BOOTSTRAP_NAME = "bootstrap-admin"  # server/tokens.py's BOOTSTRAP_NAME
ROTATE = "/admin/tokens/bootstrap/rotate"
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

DOCUMENT = document()
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
# The bearer is the administrator's, given with every call; left to itself schemathesis
# generates the Authorization header (and leaves it out of negative cases), and most calls
# were 401s that reached no handler.
SCHEMA.config.generation.update(with_security_parameters=False)
OPERATIONS = [
    (path, method.upper())
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if path != ROTATE
]


# ------------------------------------------------------------------ generated values
def _csrs() -> st.SearchStrategy[bytes]:
    """A real CSR, DER or PEM (issued at once for the administrator), or bytes (a bad CSR)."""
    names = st.from_regex(r"[a-z]{1,12}\.openapi\.test", fullmatch=True)
    der = names.map(lambda name: make_csr(name, sans=[name]))
    pem = der.map(
        lambda d: ssl.DER_cert_to_PEM_cert(d).replace("CERTIFICATE", "CERTIFICATE REQUEST").encode()
    )
    return st.one_of(der, pem, st.binary(max_size=200))


def _times() -> st.SearchStrategy[str]:
    """RFC 3339 times: anywhere, with offsets of up to a day, or at the edges of datetime's
    range with an offset on either side (so that some are out of range in UTC)."""
    offsets = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))
    anywhere = st.datetimes(timezones=offsets).map(lambda t: t.isoformat())
    edges = st.sampled_from(
        [
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "0001-01-01T00:30:00-00:30",
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T23:59:59-01:00",
            "9999-12-31T23:00:00+23:59",
        ]
    )
    return st.one_of(edges, anywhere)


schemathesis.openapi.media_type("application/pkcs10", _csrs(), aliases=["application/octet-stream"])
schemathesis.openapi.format("date-time", _times())


# ------------------------------------------------------------------ the server and its records
@dataclass
class Seeded:
    """Records made before the run, for the path parameters to name."""

    values: dict[str, list[str]] = field(default_factory=dict)

    def add(self, param: str, value: str) -> None:
        self.values.setdefault(param, []).append(value)


def start(tmp_path_factory: pytest.TempPathFactory, name: str) -> CertforgeServer:
    srv = CertforgeServer(tmp_path_factory.mktemp(name) / "data")
    srv.start()
    return srv


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    srv = start(tmp_path_factory, "openapi")
    try:
        yield srv
    finally:
        assert srv.stop() == 0, srv.log_tail()


@pytest.fixture(scope="module")
def session(api_server: CertforgeServer) -> Iterator[requests.Session]:
    # Each call still passes verify=: requests prefers REQUESTS_CA_BUNDLE to a session's own.
    with requests.Session() as s:
        yield s


def _post(session: requests.Session, server: CertforgeServer, url: str, **kw: Any) -> Any:
    resp = session.post(url, timeout=30, verify=str(server.root), **kw)
    assert resp.status_code in (200, 201, 202), resp.text
    return resp.json()


@pytest.fixture(scope="module")
def seeded(api_server: CertforgeServer, session: requests.Session) -> Seeded:
    api, bearer = f"{api_server.url}/api/v1", {"Authorization": f"Bearer {api_server.token}"}
    pkcs10 = {"Content-Type": "application/pkcs10"}
    seeded = Seeded()
    for i in range(12):
        held = i % 3 == 0  # anonymous: held for an administrator
        name = f"seed{i}.openapi.test"
        body = _post(
            session,
            api_server,
            f"{api}/requests",
            data=make_csr(name, sans=[name]),
            headers=pkcs10 if held else pkcs10 | bearer,
        )
        seeded.add("request_id", str(body["id"]))
        if not held:
            seeded.add("serial", str(body["serial"]))
    for ca in session.get(f"{api}/ca", timeout=30, verify=str(api_server.root)).json()["issuers"]:
        seeded.add("name", ca["name"])
    for i in range(4):
        token = _post(
            session, api_server, f"{api}/admin/tokens", json={"name": f"seed-{i}"}, headers=bearer
        )
        seeded.add("ref", str(token["id"] if i % 2 else token["name"]))
        user = _post(
            session, api_server, f"{api}/admin/est/users", json={"name": f"seed{i}"}, headers=bearer
        )
        seeded.add("name", str(user["name"]))
    return seeded


def token_id(token: str) -> str:
    """A token's id: the first 16 hex digits of its SHA-256 (server/tokens.py)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ the tests
def cases(path: str, method: str, seeded: Seeded) -> st.SearchStrategy[schemathesis.Case[Any]]:
    """Positive and negative cases; half of those with path parameters name a seeded record."""
    operation = SCHEMA[path][method]
    raw = operation.definition.raw
    modes = [GenerationMode.POSITIVE]
    if raw.get("parameters") or raw.get("requestBody"):
        modes.append(GenerationMode.NEGATIVE)
    generated = [operation.as_strategy(mode) for mode in modes]
    names = [p["name"] for p in raw.get("parameters", []) if p["in"] == "path"]
    known = [seeded.values[n] for n in names if n in seeded.values]
    if not names or len(known) != len(names):
        return st.one_of(*generated)
    records = st.tuples(*(st.sampled_from(k) for k in known)).map(
        lambda values: dict(zip(names, values, strict=True))
    )
    on_records = records.flatmap(
        lambda params: st.one_of(
            *(operation.as_strategy(mode, path_parameters=params) for mode in modes)
        )
    )
    return st.one_of(st.one_of(*generated), on_records)


def test_served_document_is_the_built_one(api_server: CertforgeServer) -> None:
    # No token: the document is public.
    resp = requests.get(
        f"{api_server.url}/api/v1/openapi.json", verify=str(api_server.root), timeout=10
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == DOCUMENT


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_operation_conforms(
    path: str,
    method: str,
    api_server: CertforgeServer,
    session: requests.Session,
    seeded: Seeded,
) -> None:
    base_url = f"{api_server.url}/api/v1"
    bearer = {"Authorization": f"Bearer {api_server.token}"}
    own = {BOOTSTRAP_NAME, token_id(api_server.token)}
    security = DOCUMENT["paths"][path][method.lower()].get("security", DOCUMENT["security"])
    anonymous_allowed = {} in security

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        database=None,
        derandomize=True,
    )
    @hypothesis.given(case=cases(path, method, seeded), anonymous=st.booleans())
    def run(case: schemathesis.Case[Any], anonymous: bool) -> None:
        hypothesis.assume(case.path_parameters.get("ref") not in own)
        case.call_and_validate(
            base_url=base_url,
            session=session,
            headers={} if anonymous and anonymous_allowed else bearer,
            checks=CHECKS,
            timeout=30,
            verify=str(api_server.root),
        )

    run()


def test_rotate_bootstrap_conforms(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Twice on a server of its own, each time with the token the file then holds; the
    first token is then refused (it was revoked), with a 401 the document describes."""
    srv = start(tmp_path_factory, "openapi-rotate")
    try:
        operation = SCHEMA[ROTATE]["POST"]

        def rotate(token: str) -> int:
            resp = operation.Case().call_and_validate(
                base_url=f"{srv.url}/api/v1",
                headers={"Authorization": f"Bearer {token}"},
                checks=CHECKS,
                verify=str(srv.root),
            )
            return resp.status_code

        first = srv.token
        assert rotate(first) == 200
        second = srv.token
        assert second != first
        assert rotate(second) == 200
        assert srv.token not in (first, second)
        assert rotate(first) == 401
    finally:
        assert srv.stop() == 0, srv.log_tail()
