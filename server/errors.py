"""The engine's one error vocabulary.

Every failure the engine reports is a ``CertforgeError`` whose ``kind`` is an ``ErrorKind``.
Each protocol front end maps kinds to its own wire format in one table at its edge (ACME
problem documents, SCEP failInfo, EST status codes, RFC 9457 for REST). ``detail`` is safe to
show a client by construction: internal context is chained with ``raise ... from exc`` and goes
to the log only.
"""

from __future__ import annotations

from enum import StrEnum, auto
from typing import ClassVar


class ErrorKind(StrEnum):
    MALFORMED = auto()
    BAD_CSR = auto()
    BAD_PUBLIC_KEY = auto()
    BAD_SIGNATURE_ALG = auto()
    UNAUTHORIZED = auto()
    FORBIDDEN = auto()
    NOT_FOUND = auto()
    CONFLICT = auto()
    UNKNOWN_PROFILE = auto()
    RATE_LIMITED = auto()
    TOO_LARGE = auto()
    UNAVAILABLE = auto()
    INTERNAL = auto()


class CertforgeError(Exception):
    """Base of every typed error; ``detail`` is client-safe."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Malformed(CertforgeError):
    kind = ErrorKind.MALFORMED


class MalformedJSON(Malformed):
    """JSON from a client that ``server.web.jsonreader`` refuses: not JSON, too large or too
    deep, or outside what every parser reads alike. A ``Malformed``, so each front end's
    table maps it to that protocol's malformed request."""


class BadCSR(CertforgeError):
    kind = ErrorKind.BAD_CSR


class BadPublicKey(CertforgeError):
    kind = ErrorKind.BAD_PUBLIC_KEY


class ReservedPublicKey(BadPublicKey):
    """The request's key is one certforge itself holds (``server.ca.reserved``). A bad key
    like any other to every protocol's table; its own class so that the engine can log it
    and callers can tell it from a weak key."""


class BadSignatureAlgorithm(CertforgeError):
    kind = ErrorKind.BAD_SIGNATURE_ALG


class Unauthorized(CertforgeError):
    kind = ErrorKind.UNAUTHORIZED


class Forbidden(CertforgeError):
    kind = ErrorKind.FORBIDDEN


class NotFound(CertforgeError):
    kind = ErrorKind.NOT_FOUND


class Conflict(CertforgeError):
    kind = ErrorKind.CONFLICT


class UnknownProfile(CertforgeError):
    kind = ErrorKind.UNKNOWN_PROFILE


class RateLimited(CertforgeError):
    kind = ErrorKind.RATE_LIMITED

    def __init__(self, detail: str, retry_after: int = 60) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class TooLarge(CertforgeError):
    kind = ErrorKind.TOO_LARGE


class Unavailable(CertforgeError):
    """A capability that exists in the contract but is not built yet, or is switched off."""

    kind = ErrorKind.UNAVAILABLE


class KeyUnavailable(Unavailable):
    """A key certforge holds in a PKCS#11 token cannot be used right now: the token is gone,
    its sessions broke, or every session is busy. Nothing was signed; the same request may
    succeed once the token is back (``server.ca.pkcs11`` reopens its sessions by itself)."""

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Internal(CertforgeError):
    kind = ErrorKind.INTERNAL


class ConfigError(Exception):
    """A configuration problem found at start; the message names the key."""


class StoreUnavailable(Exception):
    """The store could not be opened at start (MongoDB unreachable or refusing us, a file
    that is not an SQLite database); the message says which, without credentials."""
