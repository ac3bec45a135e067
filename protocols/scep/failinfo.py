"""SCEP's failure vocabulary (RFC 8894 §3.2.1.4) and the one table mapping engine errors to it.

A failure found once the request's pkiMessage could be read (its transactionID, senderNonce
and signer certificate) is answered as a CertRep with pkiStatus FAILURE and a failInfo. A
message that cannot be read at all gets a plain HTTP 4xx with a text body (``BadHTTP``).
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus

from server.errors import CertforgeError, ErrorKind


class FailInfo(StrEnum):
    """RFC 8894 §3.2.1.4, carried as a PrintableString of the decimal value."""

    BAD_ALG = "0"  # Unrecognized or unsupported algorithm
    BAD_MESSAGE_CHECK = (
        "1"  # Integrity check (meaning signature verification of the CMS message) failed
    )
    BAD_REQUEST = "2"  # Transaction not permitted or supported
    BAD_TIME = "3"  # The signingTime attribute ... was not sufficiently close to the system time
    BAD_CERT_ID = "4"  # No certificate could be identified matching the provided criteria


class SCEPFailure(Exception):
    """Answer with CertRep FAILURE and this failInfo; ``detail`` goes to the log only (SCEP
    has no place for text), so it may say what exactly was wrong."""

    def __init__(self, fail_info: FailInfo, detail: str) -> None:
        super().__init__(detail)
        self.fail_info = fail_info
        self.detail = detail


class BadHTTP(Exception):
    """The request cannot be answered with a CertRep: HTTP ``status`` with a text body."""

    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


# One row per ErrorKind (tests/unit/scep/test_failinfo.py checks it stays complete).
FAIL_INFO: dict[ErrorKind, FailInfo] = {
    ErrorKind.MALFORMED: FailInfo.BAD_REQUEST,
    ErrorKind.BAD_CSR: FailInfo.BAD_REQUEST,
    ErrorKind.BAD_PUBLIC_KEY: FailInfo.BAD_REQUEST,
    ErrorKind.BAD_SIGNATURE_ALG: FailInfo.BAD_ALG,
    ErrorKind.UNAUTHORIZED: FailInfo.BAD_REQUEST,
    ErrorKind.FORBIDDEN: FailInfo.BAD_REQUEST,
    ErrorKind.NOT_FOUND: FailInfo.BAD_CERT_ID,
    ErrorKind.CONFLICT: FailInfo.BAD_REQUEST,
    ErrorKind.UNKNOWN_PROFILE: FailInfo.BAD_REQUEST,
    ErrorKind.RATE_LIMITED: FailInfo.BAD_REQUEST,
    ErrorKind.TOO_LARGE: FailInfo.BAD_REQUEST,
    ErrorKind.UNAVAILABLE: FailInfo.BAD_REQUEST,
    ErrorKind.INTERNAL: FailInfo.BAD_REQUEST,
}


# What cannot become a CertRep (no readable pkiMessage: GetCACert, an unknown profile, ...) is
# an HTTP error with a text body (RFC 8894 §4); one status per ErrorKind, also kept complete.
HTTP_STATUS: dict[ErrorKind, HTTPStatus] = {
    ErrorKind.MALFORMED: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_CSR: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_PUBLIC_KEY: HTTPStatus.BAD_REQUEST,
    ErrorKind.BAD_SIGNATURE_ALG: HTTPStatus.BAD_REQUEST,
    ErrorKind.UNAUTHORIZED: HTTPStatus.FORBIDDEN,  # SCEP has no HTTP authentication to ask for
    ErrorKind.FORBIDDEN: HTTPStatus.FORBIDDEN,
    ErrorKind.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorKind.CONFLICT: HTTPStatus.CONFLICT,
    ErrorKind.UNKNOWN_PROFILE: HTTPStatus.NOT_FOUND,  # no SCEP endpoint for that profile
    ErrorKind.RATE_LIMITED: HTTPStatus.TOO_MANY_REQUESTS,
    ErrorKind.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ErrorKind.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    ErrorKind.INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


def failure_for(exc: CertforgeError) -> SCEPFailure:
    return SCEPFailure(FAIL_INFO[exc.kind], exc.detail)
