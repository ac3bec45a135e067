"""ACME problem documents (RFC 8555 §6.7, RFC 7807): the one mapping table at the edge.

Every certforge ``ErrorKind`` maps to an ``urn:ietf:params:acme:error:*`` type and an HTTP
status (a unit test checks the table is complete). ACME-specific failures the engine has no
word for (badNonce, accountDoesNotExist, ...) are raised as ``ACMEProblem`` directly. The
edge middleware (``server.web.errors``) renders either as ``application/problem+json``; an
internal error, typed or not, becomes a generic ``serverInternal`` problem with the request id
only, its traceback logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from http import HTTPStatus
from typing import Any

from aiohttp import web

from server.errors import CertforgeError, ErrorKind, RateLimited, Unauthorized
from server.web.errors import edge_errors, internal_text

PROBLEM_JSON = "application/problem+json"
ERROR_NS = "urn:ietf:params:acme:error:"


class ProblemType(StrEnum):
    """RFC 8555 §6.7 error types (and RFC 9773's alreadyReplaced), by their URN suffix."""

    ACCOUNT_DOES_NOT_EXIST = "accountDoesNotExist"
    ALREADY_REPLACED = "alreadyReplaced"
    ALREADY_REVOKED = "alreadyRevoked"
    BAD_CSR = "badCSR"
    BAD_NONCE = "badNonce"
    BAD_PUBLIC_KEY = "badPublicKey"
    BAD_REVOCATION_REASON = "badRevocationReason"
    BAD_SIGNATURE_ALGORITHM = "badSignatureAlgorithm"
    CAA = "caa"
    COMPOUND = "compound"
    CONNECTION = "connection"
    DNS = "dns"
    EXTERNAL_ACCOUNT_REQUIRED = "externalAccountRequired"
    INCORRECT_RESPONSE = "incorrectResponse"
    INVALID_CONTACT = "invalidContact"
    INVALID_PROFILE = "invalidProfile"
    MALFORMED = "malformed"
    ORDER_NOT_READY = "orderNotReady"
    RATE_LIMITED = "rateLimited"
    REJECTED_IDENTIFIER = "rejectedIdentifier"
    SERVER_INTERNAL = "serverInternal"
    TLS = "tls"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_CONTACT = "unsupportedContact"
    UNSUPPORTED_IDENTIFIER = "unsupportedIdentifier"
    USER_ACTION_REQUIRED = "userActionRequired"


# The one table: certforge's error kinds as ACME problems. RFC 8555 §6.7 gives the
# ``unauthorized`` type no status; it is 403 here for every cause (a wrong signer, a foreign
# resource, a bad EAB, a deactivated account, a JWS url that is not the request's), as in
# Boulder (probs.Unauthorized -> 403) and Pebble (UnauthorizedProblem -> 403): 401 would ask
# for HTTP authentication (RFC 9110 §15.5.2), which ACME does not use.
PROBLEMS: dict[ErrorKind, tuple[ProblemType, HTTPStatus]] = {
    ErrorKind.MALFORMED: (ProblemType.MALFORMED, HTTPStatus.BAD_REQUEST),
    ErrorKind.BAD_CSR: (ProblemType.BAD_CSR, HTTPStatus.BAD_REQUEST),
    ErrorKind.BAD_PUBLIC_KEY: (ProblemType.BAD_PUBLIC_KEY, HTTPStatus.BAD_REQUEST),
    ErrorKind.BAD_SIGNATURE_ALG: (ProblemType.BAD_CSR, HTTPStatus.BAD_REQUEST),
    ErrorKind.UNAUTHORIZED: (ProblemType.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
    ErrorKind.FORBIDDEN: (ProblemType.UNAUTHORIZED, HTTPStatus.FORBIDDEN),
    ErrorKind.NOT_FOUND: (ProblemType.MALFORMED, HTTPStatus.NOT_FOUND),
    ErrorKind.CONFLICT: (ProblemType.MALFORMED, HTTPStatus.CONFLICT),
    ErrorKind.UNKNOWN_PROFILE: (ProblemType.INVALID_PROFILE, HTTPStatus.BAD_REQUEST),
    ErrorKind.RATE_LIMITED: (ProblemType.RATE_LIMITED, HTTPStatus.TOO_MANY_REQUESTS),
    ErrorKind.TOO_LARGE: (ProblemType.MALFORMED, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    ErrorKind.UNAVAILABLE: (ProblemType.SERVER_INTERNAL, HTTPStatus.SERVICE_UNAVAILABLE),
    ErrorKind.INTERNAL: (ProblemType.SERVER_INTERNAL, HTTPStatus.INTERNAL_SERVER_ERROR),
}

_HTTP_STATUS_TYPES = {
    404: ProblemType.MALFORMED,
    405: ProblemType.MALFORMED,
    413: ProblemType.MALFORMED,
    415: ProblemType.MALFORMED,
}


@dataclass(frozen=True, slots=True)
class Subproblem:
    """RFC 8555 §6.7.1: a problem about one identifier."""

    type: ProblemType
    detail: str
    identifier: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"type": ERROR_NS + self.type, "detail": self.detail, "identifier": self.identifier}


class ACMEProblem(Exception):
    """An ACME failure with no engine equivalent (badNonce, accountDoesNotExist, ...)."""

    def __init__(
        self,
        type_: ProblemType,
        detail: str,
        status: int = 400,
        *,
        subproblems: tuple[Subproblem, ...] = (),
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.type, self.detail, self.status = type_, detail, status
        self.subproblems = subproblems
        self.headers = headers or {}
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": ERROR_NS + self.type, "detail": self.detail}
        body["status"] = self.status
        if self.subproblems:
            body["subproblems"] = [s.to_json() for s in self.subproblems]
        return body | self.extra


@dataclass
class StoredProblem:
    """A problem kept inside an order or challenge document (no status or headers)."""

    type: ProblemType
    detail: str
    subproblems: list[Subproblem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": ERROR_NS + self.type, "detail": self.detail}
        if self.subproblems:
            body["subproblems"] = [s.to_json() for s in self.subproblems]
        return body


def problem_of(exc: CertforgeError) -> ACMEProblem:
    """The ACME problem for an engine error, through the table."""
    type_, status = PROBLEMS[exc.kind]
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else {}
    return ACMEProblem(type_, exc.detail, int(status), headers=headers)


def render(problem: ACMEProblem) -> web.Response:
    return web.Response(
        status=problem.status,
        text=json.dumps(problem.to_json()),
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def unauthorized(detail: str) -> ACMEProblem:
    """The ``unauthorized`` problem, its status from the table: every ACME path raises this one."""
    return problem_of(Unauthorized(detail))


class ACMERenderer:
    """RFC 8555 §6.7 problem documents, from ``PROBLEMS`` or an ``ACMEProblem``."""

    def engine_error(self, exc: CertforgeError) -> web.StreamResponse:
        return render(problem_of(exc))

    def own_error(self, exc: Exception) -> web.StreamResponse | None:
        return render(exc) if isinstance(exc, ACMEProblem) else None

    def http_error(self, exc: web.HTTPException) -> web.StreamResponse:
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else ""
        type_ = _HTTP_STATUS_TYPES.get(exc.status, ProblemType.MALFORMED)
        return render(
            ACMEProblem(type_, detail.strip() or HTTPStatus(exc.status).description, exc.status)
        )

    def internal_error(self, request_id: str) -> web.StreamResponse:
        type_, status = PROBLEMS[ErrorKind.INTERNAL]
        return render(ACMEProblem(type_, internal_text(request_id), int(status)))


problem_middleware = edge_errors(ACMERenderer())
