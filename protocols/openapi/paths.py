"""The OpenAPI document's operations: every route the REST front end
(``protocols/rest/handlers.py``), the admin API (``protocols/admin/``) and ACME's admin part
(``protocols/acme/admin.py``) register under ``/api/v1``, with the statuses each can answer.

A unit test (``tests/unit/test_openapi.py``) walks the mounted applications' routes and
fails when one is missing here; the integration test drives the running server with
schemathesis and fails on an answer this does not describe.
"""

from __future__ import annotations

from typing import Any

from protocols.admin.inventory import CERTIFICATE_FILTERS, MAX_LIMIT, REQUEST_FILTERS
from protocols.openapi.schemas import (
    JSON,
    LOCATION,
    PEM,
    RETRY_AFTER,
    TIME,
    headers,
    problems,
    ref,
    values,
)
from server.model import RevocationReason, Status

PEM_CHAIN = "application/pem-certificate-chain"
ANYONE: list[JSON] = []  # no security requirement: the route reads no token
ANONYMOUS_OR_BEARER: list[JSON] = [{}, {"bearer": []}]


def json_content(schema: JSON) -> JSON:
    return {"application/json": {"schema": schema}}


def answer(
    description: str, schema: JSON, *, media: str = "application/json", extra: JSON | None = None
) -> JSON:
    """A response with this body; every response has X-Request-Id, ``extra`` more headers."""
    return {
        "description": description,
        "headers": headers(**(extra or {})),
        "content": {media: {"schema": schema}},
    }


def op(summary: str, tag: str, responses: JSON, **more: Any) -> JSON:
    return {"summary": summary, "tags": [tag], "responses": responses, **more}


def path_param(name: str, description: str, **schema: Any) -> JSON:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def query(name: str, schema: JSON, description: str = "") -> JSON:
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


def json_body(schema: JSON, *, required: bool = False) -> JSON:
    """An admin body: read as JSON whatever its Content-Type; none at all is ``{}``."""
    return {"required": required, "content": json_content(schema)}


REQUEST_ID = path_param("request_id", "the request's id")
SERIAL = path_param(
    "serial",
    "the certificate's serial number: hexadecimal, any case, with or without colons",
    pattern="^[0-9A-Fa-f:]+$",
)
LIMIT = query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
    f"at most this many, 1 to {MAX_LIMIT}",
)


# ------------------------------------------------------------------------------ REST
def rest_paths() -> JSON:
    def binary(description: str) -> JSON:
        return {"schema": {"type": "string", "format": "binary", "description": description}}

    submit = op(
        "Submit a certificate request",
        "REST",
        {
            "201": answer("Issued at once.", ref("RESTIssued"), extra={"Location": LOCATION}),
            "202": answer(
                "Held for an administrator.",
                ref("RESTPending"),
                extra={"Location": LOCATION, "Retry-After": RETRY_AFTER},
            ),
            "200": answer("Denied.", ref("RESTDenied"), extra={"Location": LOCATION}),
            **problems(400, 401, 409, 413, 415, 429),
        },
        description=(
            "Anonymous, or with a bearer token (a token that is sent must be valid). An "
            "anonymous request is held for an administrator and counted per client address "
            "([rest] anonymous_requests_per_hour); a token's request is issued at once where "
            "the profile allows and its roles include requester or administrator."
        ),
        security=ANONYMOUS_OR_BEARER,
        parameters=[
            query("profile", {"type": "string"}, "the profile, for a CSR sent as the body")
        ],
        requestBody={
            "required": True,
            "content": {
                "application/json": {"schema": ref("CSRSubmission")},
                "application/pkcs10": binary("the CSR itself: DER, PEM or base64 of the DER"),
                "application/octet-stream": binary("as application/pkcs10"),
            },
        },
    )
    get_request = op(
        "The request's current answer (RetrievePending)",
        "REST",
        {
            "200": answer(
                "Issued, denied or failed.",
                {"oneOf": [ref("RESTIssued"), ref("RESTDenied"), ref("RESTFailed")]},
                extra={"Location": LOCATION | {"required": False}},
            ),
            "202": answer(
                "Still pending, or approved and being signed.",
                ref("RESTPending"),
                extra={"Location": LOCATION, "Retry-After": RETRY_AFTER},
            ),
            **problems(404),
        },
        description="Needs no token: the request id, random, is the requester's handle.",
        security=ANYONE,
        parameters=[REQUEST_ID],
    )
    return {
        "/requests": {"post": submit},
        "/requests/{request_id}": {"get": get_request},
        "/requests/{request_id}/certificate": {
            "get": op(
                "The issued certificate and its chain, leaf first",
                "REST",
                {
                    "200": answer("The PEM chain.", PEM, media=PEM_CHAIN),
                    **problems(404),
                },
                description="404 also for a request that is not issued.",
                security=ANYONE,
                parameters=[REQUEST_ID],
            )
        },
        "/ca": {
            "get": op(
                "The root and the issuing CAs",
                "REST",
                {"200": answer("The CAs.", ref("CAList")), **problems()},
                security=ANYONE,
            )
        },
        "/ca/{name}/chain": {
            "get": op(
                "An issuing CA's chain up to and including the root",
                "REST",
                {"200": answer("The PEM chain.", PEM, media=PEM_CHAIN), **problems(404)},
                security=ANYONE,
                parameters=[path_param("name", "the issuing CA's name")],
            )
        },
        "/openapi.json": {
            "get": op(
                "This document",
                "REST",
                {"200": answer("The OpenAPI document.", {"type": "object"}), **problems()},
                security=ANYONE,
            )
        },
    }


# ------------------------------------------------------------------------------ inventory
_HEX_PREFIX = {"type": "string", "pattern": "^[0-9A-Fa-f:]{1,40}$"}
_FILTERS: dict[str, tuple[JSON, str]] = {
    "subject": ({"type": "string"}, "a substring of the subject, any case"),
    "san": ({"type": "string"}, "a substring of a SAN (dns:www.ex), any case"),
    "serial": (_HEX_PREFIX, "the start of the serial, hexadecimal"),
    "profile": ({"type": "string"}, "the profile's name, exactly"),
    "issuer": ({"type": "string"}, "the issuing CA's name, exactly"),
    "protocol": ({"type": "string"}, "rest, acme, scep or est"),
    "requester": ({"type": "string"}, "the requester's label (token:NAME), exactly"),
    "reason": ({"enum": values(RevocationReason)}, "the revocation reason"),
    "key_sha256": ({"type": "string"}, "hex SHA-256 of the SubjectPublicKeyInfo"),
    "issued_after": (TIME, "issued (a request: created) at or after, with its offset"),
    "issued_before": (TIME, "issued (a request: created) before, with its offset"),
    "expires_after": (TIME, "notAfter at or after, with its offset"),
    "expires_before": (TIME, "notAfter before, with its offset"),
    "expiring": (
        {"type": "string", "pattern": "^[0-9]{1,9}[smhd]$"},
        "expires within this from now (30d, 12h, 90m, 45s), at most 36500 days",
    ),
    "order": ({"enum": ["asc", "desc"]}, "desc for sort=issued, asc for expiry by default"),
}
_PAGING = [
    LIMIT,
    query("cursor", {"type": "string"}, "the 'next' of the page before, with the same filters"),
    query("pem", {"type": "boolean", "default": False}, "each record in full"),
]


def inventory_parameters(kind: str) -> list[JSON]:
    """Every filter the handler takes (``protocols/admin/inventory.py``), then paging. A
    filter added there without its entry in ``_FILTERS`` stops the front end from loading
    (a KeyError); ``tests/unit/test_openapi.py`` fails on it first."""
    if kind == "certificates":
        names, statuses, sorts = (
            CERTIFICATE_FILTERS,
            ["valid", "revoked", "expired"],
            ["issued", "expiry"],
        )
    else:
        names, statuses, sorts = REQUEST_FILTERS, values(Status), ["issued"]
    params = [
        query("status", {"enum": statuses}, "expired: not revoked, and notAfter passed"),
        query("sort", {"enum": sorts}, "default: expiry when an expiry filter is given"),
    ]
    params += [query(n, *_FILTERS[n]) for n in sorted(names - {"status", "sort"})]
    return params + _PAGING


ADMIN_ERRORS = (401, 403)


def admin(summary: str, tag: str, responses: JSON, *errors: int, **more: Any) -> JSON:
    """An admin operation: a bearer token whose roles permit it, or 401 and 403."""
    return op(summary, tag, responses | problems(*ADMIN_ERRORS, *errors), **more)


def inventory_paths() -> JSON:
    return {
        "/admin/requests": {
            "get": admin(
                "Search requests",
                "Inventory",
                {"200": answer("A page, newest first by default.", ref("RequestPage"))},
                400,
                description="An unknown or repeated parameter, or a cursor of other filters, "
                "is a 400 naming it.",
                parameters=inventory_parameters("requests"),
            )
        },
        "/admin/certificates": {
            "get": admin(
                "Search certificates",
                "Inventory",
                {"200": answer("A page.", ref("CertificatePage"))},
                400,
                description="An unknown or repeated parameter, or a cursor of other filters, "
                "is a 400 naming it.",
                parameters=inventory_parameters("certificates"),
            )
        },
        "/admin/events": {
            "get": admin(
                "The event log, newest first",
                "Inventory",
                {"200": answer("Events.", ref("EventList"))},
                400,
                parameters=[
                    query("request_id", {"type": "string"}, "one request's events"),
                    query("serial", {"type": "string", "pattern": "^[0-9A-Fa-f:]+$"}),
                    LIMIT,
                ],
            )
        },
    }
