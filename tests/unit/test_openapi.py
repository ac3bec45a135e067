"""The OpenAPI document (``protocols/openapi``) against the code it describes: it is valid
OpenAPI 3.1, it names every route the front ends mount under ``/api/v1`` and no other, and
each inventory list documents exactly the filters its handler takes."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis

from protocols.admin.inventory import CERTIFICATE_FILTERS, REQUEST_FILTERS
from protocols.openapi import PREFIX, document
from server.config import Config
from server.frontend import by_prefix, installed, mount_frontends

DOCUMENT = document()


def mounted_routes() -> set[tuple[str, str]]:
    """(method, path) of every route under /api/v1, as the running server mounts them;
    HEAD, which aiohttp adds to every GET, is left out (the document says so)."""
    routes = set()
    for mount in by_prefix(mount_frontends(Config(), installed())):
        if mount.listener != "https" or not mount.prefix.startswith(PREFIX + "/"):
            continue
        for route in mount.app.router.routes():
            if route.method != "HEAD":
                path = mount.prefix.rstrip("/") + route.resource.canonical  # type: ignore[union-attr]
                routes.add((route.method, path.removeprefix(PREFIX)))
    return routes


def documented_routes() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in DOCUMENT["paths"].items() for method in item}


def test_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(DOCUMENT).validate()


def test_every_mounted_route_is_documented_and_no_other() -> None:
    mounted = mounted_routes()
    assert len(mounted) > 20  # the walk found the front ends
    assert mounted == documented_routes()


def _parameters(path: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in DOCUMENT["paths"][path]["get"]["parameters"]}


@pytest.mark.parametrize(
    ("path", "filters"),
    [
        pytest.param("/admin/certificates", CERTIFICATE_FILTERS, id="certificates"),
        pytest.param("/admin/requests", REQUEST_FILTERS, id="requests"),
    ],
)
def test_inventory_documents_every_filter_it_takes(path: str, filters: frozenset[str]) -> None:
    params = _parameters(path)
    assert set(params) == filters | {"limit", "cursor", "pem"}
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    assert params["limit"]["schema"] | {} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 100,
    }


def test_anonymous_only_where_the_handler_reads_no_token() -> None:
    """Global security is the bearer; REST submission also takes none, and the REST reads
    and this document need none at all."""
    assert DOCUMENT["security"] == [{"bearer": []}]
    open_paths = {
        (path, method)
        for path, item in DOCUMENT["paths"].items()
        for method, op in item.items()
        if "security" in op
    }
    assert open_paths == {
        ("/requests", "post"),
        ("/requests/{request_id}", "get"),
        ("/requests/{request_id}/certificate", "get"),
        ("/ca", "get"),
        ("/ca/{name}/chain", "get"),
        ("/openapi.json", "get"),
    }
    assert DOCUMENT["paths"]["/requests"]["post"]["security"] == [{}, {"bearer": []}]


def test_every_admin_operation_answers_401_and_403() -> None:
    for path, item in DOCUMENT["paths"].items():
        for op in item.values():
            if path.startswith("/admin/"):
                assert {"401", "403"} <= set(op["responses"]), path
