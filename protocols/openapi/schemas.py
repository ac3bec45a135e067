"""The OpenAPI document's components: the JSON shapes the REST and admin APIs answer with
(``protocols/rest/handlers.py``, ``protocols/admin/render.py``, ``protocols/admin/tokens.py``)
and the problem documents of ``protocols/rest/problems.py``.

The enumerations come from the model itself (``server.model``, ``server.tokens``), so a new
status or reason is in the document the day it is in the code. Response objects stay open
(``additionalProperties`` is not forbidden): a client may rely on what is listed here, and a
member added later breaks no one.
"""

from __future__ import annotations

from typing import Any

from protocols.rest.problems import PROBLEM_TYPE
from server.model import CertStatus, EventKind, RevocationReason, Role, Status
from server.tokens import TokenState

JSON = dict[str, Any]

# RFC 3339 times, as ``datetime.isoformat()`` writes them for the aware times the server keeps.
TIME: JSON = {"type": "string", "format": "date-time"}
TIME_OR_NULL: JSON = {"type": ["string", "null"], "format": "date-time"}
HEX: JSON = {"type": "string", "pattern": "^[0-9a-f]+$", "description": "lowercase hex"}
PEM: JSON = {"type": "string", "description": "PEM text"}
STRING_OR_NULL: JSON = {"type": ["string", "null"]}


def ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: JSON, required: list[str] | None = None, **more: Any) -> JSON:
    """An object with these members; all of them required unless ``required`` says which."""
    return {
        "type": "object",
        "required": list(properties) if required is None else required,
        "properties": properties,
        **more,
    }


def values(enum: Any) -> list[str]:
    return [str(v) for v in enum]


def _rest_schemas() -> JSON:
    def outcome(status: str, members: JSON, description: str) -> JSON:
        props = {"id": {"type": "string"}, "status": {"const": status}, **members}
        schema = obj(props, description=description)
        # GET /requests/{id} adds the request's profile; the answer to a submission has none.
        schema["properties"]["profile"] = {"type": "string"}
        return schema

    return {
        "RESTIssued": outcome(
            "issued",
            {
                "serial": HEX,
                "not_after": TIME,
                "certificate": PEM,
                "chain": {"type": "array", "items": PEM},
            },
            "Issued: the certificate and its chain (the issuing CA first, the root not included).",
        ),
        "RESTPending": outcome(
            "pending",
            {"reason": {"type": "string"}},
            "Waiting for an administrator (or being signed); poll the Location.",
        ),
        "RESTDenied": outcome(
            "denied", {"reason": {"type": "string"}}, "Denied by policy or by an administrator."
        ),
        "RESTFailed": outcome(
            "failed",
            {"reason": STRING_OR_NULL},
            "Approved, but signing failed (for example, the CA could not build the certificate).",
        ),
        "CSRSubmission": obj(
            {
                "csr": {
                    "type": "string",
                    "description": "the PKCS#10 request: PEM, or base64 of its DER",
                },
                "profile": {"type": "string", "description": "default: the configured one"},
            },
            required=["csr"],
        ),
        "CAList": obj(
            {
                "root": PEM,
                "issuers": {
                    "type": "array",
                    "items": obj(
                        {
                            "name": {"type": "string"},
                            "subject": {"type": "string", "description": "RFC 4514"},
                            "not_after": TIME,
                            "certificate": PEM,
                        }
                    ),
                },
            }
        ),
    }


def _record_schemas() -> JSON:
    request = {
        "id": {"type": "string"},
        "status": {"enum": values(Status)},
        "profile": {"type": "string"},
        "protocol": {"type": "string", "examples": ["rest", "acme", "scep", "est"]},
        "requester": {"type": "string", "examples": ["token:ci-bot", "anonymous"]},
        "subject": {"type": "string", "description": "the CSR's subject, RFC 4514"},
        "sans": {"type": "array", "items": {"type": "string"}, "examples": [["dns:a.test"]]},
        "created_at": TIME,
        "updated_at": TIME,
        "reason": STRING_OR_NULL,
        "serial": {"type": ["string", "null"], "pattern": "^[0-9a-f]+$"},
        "transaction_id": STRING_OR_NULL,
    }
    request_full = {
        **request,
        "csr": PEM,
        "draft": {"type": ["object", "null"], "description": "the certificate policy shaped"},
        "vouched": obj(
            {
                "identifiers": {"type": "array", "items": {"type": "string"}},
                "renewal_of": {"type": ["integer", "null"]},
                "attributes": {"type": "array", "items": {"type": "array"}},
            }
        ),
    }
    certificate = {
        "serial": HEX,
        "request_id": {"type": "string"},
        "issuer": {"type": "string"},
        "profile": {"type": "string"},
        "subject": {"type": "string"},
        "sans": {"type": "array", "items": {"type": "string"}},
        "not_before": TIME,
        "not_after": TIME,
        "status": {"enum": values(CertStatus)},
        "requester": {"type": "string"},
        "key_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "revoked_at": TIME_OR_NULL,
        "revocation_reason": {"enum": [*values(RevocationReason), None]},
        "invalidity_date": TIME_OR_NULL,
    }
    event = obj(
        {
            "id": {"type": "string"},
            "kind": {"enum": values(EventKind)},
            "at": TIME,
            "request_id": STRING_OR_NULL,
            "serial": {"type": ["string", "null"], "pattern": "^[0-9a-f]+$"},
            "data": {"type": "object"},
        }
    )
    events = {"events": {"type": "array", "items": ref("Event")}}
    return {
        "Request": obj(request),
        "RequestFull": obj(request_full),
        "RequestWithEvents": obj(request_full | events),
        "RequestPage": obj(
            {
                "requests": {
                    "type": "array",
                    "items": {"anyOf": [ref("Request"), ref("RequestFull")]},
                    "description": "with pem=true, each with its CSR, draft and vouched",
                },
                "next": {"type": ["string", "null"], "description": "the cursor of the next page"},
            }
        ),
        "Certificate": obj(certificate),
        "CertificateFull": obj(certificate | {"certificate": PEM}),
        "CertificateWithEvents": obj(certificate | {"certificate": PEM} | events),
        "CertificatePage": obj(
            {
                "certificates": {
                    "type": "array",
                    "items": {"anyOf": [ref("Certificate"), ref("CertificateFull")]},
                    "description": "with pem=true, each with its PEM certificate",
                },
                "next": {"type": ["string", "null"], "description": "the cursor of the next page"},
            }
        ),
        "Event": event,
        "EventList": obj(events),
    }


def _secret_schemas() -> JSON:
    token = {
        "id": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
        "name": {"type": "string"},
        "roles": {"type": "array", "items": {"enum": values(Role)}},
        "state": {"enum": values(TokenState)},
        "created_at": TIME_OR_NULL,
        "last_used_at": TIME_OR_NULL,
        "expires_at": TIME_OR_NULL,
        "revoked_at": TIME_OR_NULL,
    }
    crl = obj(
        {
            "issuer": {"type": "string", "description": "the CA's name (root for the root)"},
            "shard": {"type": ["integer", "null"], "description": "the partition, if any"},
            "delta_of": {"type": ["integer", "null"], "description": "a delta's base CRL"},
            "number": {"type": "integer"},
            "this_update": TIME,
            "next_update": TIME,
            "entries": {"type": "integer", "minimum": 0},
        }
    )
    return {
        "Token": obj(token),
        "NewToken": obj(token | {"token": {"type": "string", "description": "shown once"}}),
        "TokenList": obj({"tokens": {"type": "array", "items": ref("Token")}}),
        "BootstrapRotation": obj(
            {
                "token": ref("Token"),
                "revoked": {"anyOf": [ref("Token"), {"type": "null"}]},
                "path": {"type": "string", "description": "the admin.token written"},
            }
        ),
        "CRLList": obj({"crls": {"type": "array", "items": crl}}),
        "Challenge": obj(
            {"challenge": {"type": "string"}, "expires": TIME, "profile": STRING_OR_NULL}
        ),
        "CMPSecret": obj(
            {
                "reference": {"type": "string"},
                "secret": {"type": "string"},
                "expires": TIME,
                "profile": STRING_OR_NULL,
            }
        ),
        "ESTUserList": obj(
            {
                "users": {
                    "type": "array",
                    "items": obj({"name": {"type": "string"}, "created_at": {"type": "string"}}),
                }
            }
        ),
        "NewESTUser": obj({"name": {"type": "string"}, "password": {"type": "string"}}),
        "EABCredentials": obj(
            {
                "kid": {"type": "string"},
                "hmac_key": {"type": "string", "description": "base64url, unpadded"},
            }
        ),
        "RenewalMark": obj({"marked": {"type": "string"}, "at": TIME}),
    }


def _problem_schema() -> JSON:
    return obj(
        {
            "type": {"type": "string", "examples": ["urn:certforge:problem:malformed"]},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
        },
        description="RFC 9457 problem details",
    )


def schemas() -> JSON:
    return {
        "Problem": _problem_schema(),
        **_rest_schemas(),
        **_record_schemas(),
        **_secret_schemas(),
    }


# ------------------------------------------------------------------ responses and headers
REQUEST_ID: JSON = {
    "description": "the request's id, as the server's log line names it",
    "required": True,
    "schema": {"type": "string"},
}
RETRY_AFTER: JSON = {
    "description": "seconds to wait (RFC 9110 §10.2.3)",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}
LOCATION: JSON = {
    "description": "where to poll the request",
    "required": True,
    "schema": {"type": "string"},
}

# status: (description, extra headers)
_PROBLEMS: dict[int, tuple[str, JSON]] = {
    400: ("Malformed input: a bad parameter, body, CSR or key, or an unknown profile.", {}),
    401: (
        "No bearer token, or one that is not valid, revoked or expired.",
        {
            "WWW-Authenticate": {
                "required": True,
                "schema": {"type": "string", "const": 'Bearer realm="certforge"'},
            }
        },
    ),
    403: ("The token's roles do not permit this (server/roles.py); nothing changed.", {}),
    404: ("No such record.", {}),
    409: ("The record is not in a state that allows this.", {}),
    413: ("The body is larger than [server] max_body_bytes (or the CSR than 32 KiB).", {}),
    415: ("The body's Content-Type is not one this operation takes.", {}),
    429: ("Too many requests of this kind; retry after the given seconds.", {}),
    503: ("The server is stopping; retry (here once restarted, or another server).", {}),
}


def headers(**more: JSON) -> JSON:
    return {"X-Request-Id": REQUEST_ID, **more}


def responses() -> JSON:
    out: JSON = {}
    for status, (description, extra) in _PROBLEMS.items():
        if status in (429, 503):
            extra = {"Retry-After": RETRY_AFTER}
        out[f"Problem{status}"] = {
            "description": description,
            "headers": headers(**extra),
            "content": {PROBLEM_TYPE: {"schema": ref("Problem")}},
        }
    return out


def problems(*statuses: int) -> JSON:
    """The problem responses an operation can give; 503 (stopping) any of them can."""
    return {
        str(s): {"$ref": f"#/components/responses/Problem{s}"} for s in sorted({*statuses, 503})
    }
