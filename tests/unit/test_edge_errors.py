"""The one edge error middleware (``server.web.errors``) under every protocol's renderer: one
internal-error policy for all, each table complete."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.typedefs import Middleware
from cryptography.x509 import ocsp

from protocols.acme.problems import PROBLEMS as ACME_PROBLEMS
from protocols.acme.problems import problem_middleware as acme_edge
from protocols.acme.problems import unauthorized
from protocols.est.errors import est_errors
from protocols.ocsp.errors import ocsp_error_middleware
from protocols.rest.problems import problem_middleware
from protocols.scep.failinfo import HTTP_STATUS
from protocols.scep.handlers import scep_errors
from server.errors import ErrorKind, Internal, NotFound, Unauthorized
from server.web.middleware import request_log

SECRET = "db password is hunter2"

TEXT_EDGES = [
    pytest.param(problem_middleware, id="rest"),
    pytest.param(acme_edge, id="acme"),
    pytest.param(est_errors, id="est"),
    pytest.param(scep_errors, id="scep"),
]


def _app(edge: Middleware, exc: BaseException) -> web.Application:
    async def fail(request: web.Request) -> web.Response:
        raise exc

    app = web.Application(middlewares=[request_log, edge])
    app.router.add_get("/", fail)
    return app


@pytest.mark.parametrize("edge", TEXT_EDGES)
@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(Internal(SECRET), id="internal/typed"),
        pytest.param(RuntimeError(SECRET), id="internal/untyped"),
    ],
)
async def test_internal_error_shows_the_request_id_only(edge: Middleware, exc: Exception) -> None:
    async with TestClient(TestServer(_app(edge, exc))) as client:
        resp = await client.get("/")
        body = await resp.text()
    assert resp.status == 500
    assert SECRET not in body
    assert resp.headers["X-Request-Id"] in body


@pytest.mark.parametrize("edge", [*TEXT_EDGES, pytest.param(ocsp_error_middleware, id="ocsp")])
async def test_redirect_passes_through(edge: Middleware) -> None:
    async with TestClient(TestServer(_app(edge, web.HTTPFound("/elsewhere")))) as client:
        resp = await client.get("/", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "/elsewhere")


@pytest.mark.parametrize("edge", TEXT_EDGES)
async def test_typed_error_keeps_its_client_safe_detail(edge: Middleware) -> None:
    async with TestClient(TestServer(_app(edge, NotFound("no such request")))) as client:
        resp = await client.get("/")
        body = await resp.text()
    assert resp.status == 404
    assert "no such request" in body


@pytest.mark.parametrize(
    "exc", [pytest.param(Internal(SECRET), id="typed"), pytest.param(RuntimeError(), id="untyped")]
)
async def test_ocsp_internal_error_is_an_internal_error_response(exc: Exception) -> None:
    async with TestClient(TestServer(_app(ocsp_error_middleware, exc))) as client:
        resp = await client.get("/")
        der = await resp.read()
    assert resp.status == 200
    status = ocsp.load_der_ocsp_response(der).response_status
    assert status is ocsp.OCSPResponseStatus.INTERNAL_ERROR


def test_scep_http_status_table_covers_every_kind() -> None:
    assert set(HTTP_STATUS) == set(ErrorKind)
    assert all(400 <= status < 600 for status in HTTP_STATUS.values())


async def test_acme_unauthorized_is_403_from_every_path() -> None:
    """RFC 8555 §6.7 ``unauthorized``: 403, as in Boulder and Pebble; the helper every ACME
    path raises and the engine's Unauthorized agree."""
    assert ACME_PROBLEMS[ErrorKind.UNAUTHORIZED][1] == 403
    assert unauthorized("not yours").status == 403
    app = _app(
        acme_edge,
        Unauthorized("not yours"),
    )
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/")
        doc = json.loads(await resp.text())
    assert (resp.status, doc["type"]) == (403, "urn:ietf:params:acme:error:unauthorized")
