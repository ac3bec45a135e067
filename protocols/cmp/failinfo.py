"""CMP's failure vocabulary (RFC 4210 §5.2.3, as updated by RFC 9480) and the one table
mapping engine errors to it.

A failure found once the request's PKIMessage could be read (its header, at least) is
answered as an ``error`` message (RFC 4210 §5.3.21) carrying a PKIStatusInfo: the status,
one PKIFailureInfo bit and a client-safe text. A body that is not a PKIMessage at all gets a
plain HTTP 400 (RFC 6712 §3.6: HTTP errors only where no PKIMessage can be built).
"""

from __future__ import annotations

from enum import IntEnum

from server.errors import CertforgeError, ErrorKind


class PKIStatus(IntEnum):
    """RFC 4210 §5.2.3 PKIStatus."""

    ACCEPTED = 0
    GRANTED_WITH_MODS = 1
    REJECTION = 2
    WAITING = 3
    REVOCATION_WARNING = 4
    REVOCATION_NOTIFICATION = 5
    KEY_UPDATE_WARNING = 6


class FailInfo(IntEnum):
    """RFC 4210 §5.2.3 PKIFailureInfo bit numbers (RFC 9480 §2.6 adds none)."""

    BAD_ALG = 0
    BAD_MESSAGE_CHECK = 1
    BAD_REQUEST = 2
    BAD_TIME = 3
    BAD_CERT_ID = 4
    BAD_DATA_FORMAT = 5
    WRONG_AUTHORITY = 6
    INCORRECT_DATA = 7
    MISSING_TIME_STAMP = 8
    BAD_POP = 9
    CERT_REVOKED = 10
    CERT_CONFIRMED = 11
    WRONG_INTEGRITY = 12
    BAD_RECIPIENT_NONCE = 13
    TIME_NOT_AVAILABLE = 14
    UNACCEPTED_POLICY = 15
    UNACCEPTED_EXTENSION = 16
    ADD_INFO_NOT_AVAILABLE = 17
    BAD_SENDER_NONCE = 18
    BAD_CERT_TEMPLATE = 19
    SIGNER_NOT_TRUSTED = 20
    TRANSACTION_ID_IN_USE = 21
    UNSUPPORTED_VERSION = 22
    NOT_AUTHORIZED = 23
    SYSTEM_UNAVAIL = 24
    SYSTEM_FAILURE = 25
    DUPLICATE_CERT_REQ = 26


class CMPFailure(Exception):
    """Answer with an error message carrying this failInfo. ``detail`` is sent to the client
    as the statusString, so it must be client-safe (as ``CertforgeError.detail`` is)."""

    def __init__(
        self, fail_info: FailInfo, detail: str, *, status: PKIStatus = PKIStatus.REJECTION
    ) -> None:
        super().__init__(detail)
        self.fail_info = fail_info
        self.detail = detail
        self.status = status


class NotAPKIMessage(Exception):
    """The body is not a DER PKIMessage, so no CMP answer can be addressed: HTTP 400."""


# One row per ErrorKind (tests/unit/cmp/test_failinfo.py checks it stays complete). No engine
# error is "waiting": a request the engine keeps pending is an Outcome, answered with a
# waiting status in the CertResponse (or pollRep), never an exception.
FAIL_INFO: dict[ErrorKind, tuple[PKIStatus, FailInfo]] = {
    ErrorKind.MALFORMED: (PKIStatus.REJECTION, FailInfo.BAD_DATA_FORMAT),
    ErrorKind.BAD_CSR: (PKIStatus.REJECTION, FailInfo.BAD_CERT_TEMPLATE),
    ErrorKind.BAD_PUBLIC_KEY: (PKIStatus.REJECTION, FailInfo.BAD_CERT_TEMPLATE),
    ErrorKind.BAD_SIGNATURE_ALG: (PKIStatus.REJECTION, FailInfo.BAD_ALG),
    ErrorKind.UNAUTHORIZED: (PKIStatus.REJECTION, FailInfo.NOT_AUTHORIZED),
    ErrorKind.FORBIDDEN: (PKIStatus.REJECTION, FailInfo.NOT_AUTHORIZED),
    ErrorKind.NOT_FOUND: (PKIStatus.REJECTION, FailInfo.BAD_CERT_ID),
    ErrorKind.CONFLICT: (PKIStatus.REJECTION, FailInfo.BAD_REQUEST),
    ErrorKind.UNKNOWN_PROFILE: (PKIStatus.REJECTION, FailInfo.BAD_REQUEST),
    ErrorKind.RATE_LIMITED: (PKIStatus.REJECTION, FailInfo.SYSTEM_UNAVAIL),
    ErrorKind.TOO_LARGE: (PKIStatus.REJECTION, FailInfo.BAD_DATA_FORMAT),
    ErrorKind.UNAVAILABLE: (PKIStatus.REJECTION, FailInfo.SYSTEM_UNAVAIL),
    ErrorKind.INTERNAL: (PKIStatus.REJECTION, FailInfo.SYSTEM_FAILURE),
}


def failure_for(exc: CertforgeError) -> CMPFailure:
    status, fail_info = FAIL_INFO[exc.kind]
    return CMPFailure(fail_info, exc.detail, status=status)
