"""The OCSP responder's core (RFC 6960, with the RFC 5019 lightweight profile): from one
CertID to a signed BasicOCSPResponse, cached so that the hot path does not sign.

What it answers:
- The CertID's issuerNameHash and issuerKeyHash (with SHA-1 or a SHA-2 hash) must name an
  issuing CA this responder serves; otherwise ``Unauthorized`` (RFC 6960 §2.3: the responder
  "is not capable of responding authoritatively"), as for an unsupported hash algorithm.
- ``good``, ``revoked`` (time and reason; certificateHold is revoked while it lasts) or
  ``unknown`` for a serial that CA never issued (RFC 6960 §2.2).
- Responses are signed by the CA's delegated OCSP signing certificate (``signers.py``),
  included in the response, with the responder named by key hash (RFC 6960 §4.2.2.3);
  thisUpdate is when the status was read and nextUpdate ``[ocsp] validity_hours`` later.

Caching. Each answer is kept per (CA, serial, hash algorithm) and served as is until half its
validity has passed (then re-signed, RFC 5019 §6.1's "pre-produced" responses). A revocation or
release on this server drops the serial's answers at once (``invalidate``, called by the
engine); one recorded by another server sharing the store is seen when the cached status is
re-read, at most ``[ocsp] recheck_seconds`` after it was last read. Re-reading costs one store
lookup per serial per interval; only a changed status is signed again.

A request with a nonce (RFC 8954) gets the nonce echoed, so its response is signed for it and
never cached.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from server.ca.issuers import IssuingCA
from server.config import OCSPConfig
from server.errors import NotFound, Unauthorized
from server.model import CertStatus, Clock, RevocationReason
from server.revocation import der
from server.revocation.crl import REASON_FLAGS
from server.revocation.signers import OCSPSigner, OCSPSigners
from server.store.base import Store

log = logging.getLogger("certforge.ocsp")

# RFC 6960 §4.3 requires SHA-1 CertIDs to be understood; SHA-2 ones are accepted too.
HASHES: Mapping[str, hashes.HashAlgorithm] = {
    "sha1": hashes.SHA1(),  # noqa: S303 - CertID hashing, not a signature (RFC 5019 §2.1.1)
    "sha224": hashes.SHA224(),
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}
# Answers kept; past either bound the cache starts over (floods of unknown serials). The bytes
# bound is what holds: an answer is a few hundred bytes, a few KB with a long chain of names.
MAX_CACHED = 200_000
MAX_CACHED_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CertID:
    """RFC 6960 §4.1.1 CertID: which certificate a request asks about."""

    hash_algorithm: str  # a key of HASHES
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int


@dataclass(frozen=True, slots=True)
class OCSPAnswer:
    der: bytes  # the whole OCSPResponse (responseStatus successful)
    this_update: datetime
    next_update: datetime
    etag: str
    cacheable: bool  # False for a nonce's response


@dataclass(slots=True)
class _Cached:
    answer: OCSPAnswer
    status: tuple[str, datetime | None, RevocationReason | None]
    read_at: float  # time.monotonic() of the status read
    refresh_at: datetime  # re-sign after this


def issuer_hashes(ca: IssuingCA, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """RFC 6960 §4.1.1: the hash of the issuer's DER-encoded name, and of the value of its
    subjectPublicKey BIT STRING (the key, without the SubjectPublicKeyInfo wrapping).

    Both are taken from the CA certificate's own bytes, not re-encoded, so an imported CA
    whose name was encoded unusually still matches what clients hash."""
    fields = list(der.elements(der.content(ca.certificate.tbs_certificate_bytes)))
    if fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    subject, spki = fields[4], fields[5]
    _, bit_string = der.elements(der.content(spki))
    key = der.content(bit_string)[1:]  # the first content octet counts unused bits
    return _hash(algorithm, subject), _hash(algorithm, key)


def _hash(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


class OCSPResponder:
    def __init__(
        self,
        *,
        store: Store,
        issuers: Mapping[str, IssuingCA],
        signers: OCSPSigners,
        config: OCSPConfig,
        clock: Clock,
    ) -> None:
        self._store = store
        self._signers = signers
        self._config = config
        self._clock = clock
        self._validity = timedelta(hours=config.validity_hours)
        self._cache: dict[tuple[str, int, str], _Cached] = {}
        self._cached_bytes = 0
        self._issuers: dict[tuple[str, bytes, bytes], IssuingCA] = {}
        for ca in issuers.values():
            if not config.serves(ca.name):
                continue
            for name, algorithm in HASHES.items():
                name_hash, key_hash = issuer_hashes(ca, algorithm)
                self._issuers[(name, name_hash, key_hash)] = ca
        signers.on_rotation(self.clear)

    def issuer_for(self, cert_id: CertID) -> IssuingCA:
        ca = self._issuers.get(
            (cert_id.hash_algorithm, cert_id.issuer_name_hash, cert_id.issuer_key_hash)
        )
        if ca is None:
            raise Unauthorized("this responder does not answer for that issuer")
        return ca

    def cached(self, cert_id: CertID) -> OCSPAnswer | None:
        """The hot path: a cached answer still fresh enough to serve without any I/O."""
        ca = self._issuers.get(
            (cert_id.hash_algorithm, cert_id.issuer_name_hash, cert_id.issuer_key_hash)
        )
        if ca is None:
            return None
        hit = self._cache.get((ca.name, cert_id.serial, cert_id.hash_algorithm))
        if hit is None or time.monotonic() - hit.read_at >= self._config.recheck_seconds:
            return None
        if self._clock.now() >= hit.refresh_at:
            return None
        return hit.answer

    async def respond(self, cert_id: CertID, *, nonce: bytes | None = None) -> OCSPAnswer:
        ca = self.issuer_for(cert_id)
        key = (ca.name, cert_id.serial, cert_id.hash_algorithm)
        if nonce is None and (answer := self.cached(cert_id)) is not None:
            return answer
        status = await self._status(ca, cert_id.serial)
        now = self._clock.now()
        hit = self._cache.get(key)
        if nonce is None and hit is not None and hit.status == status and now < hit.refresh_at:
            hit.read_at = time.monotonic()
            return hit.answer
        answer = self._sign(ca, cert_id, status, nonce=nonce)
        if nonce is None:
            size = len(answer.der)
            if len(self._cache) >= MAX_CACHED or self._cached_bytes + size > MAX_CACHED_BYTES:
                self.clear()
            refresh = answer.this_update + (answer.next_update - answer.this_update) / 2
            if (old := self._cache.pop(key, None)) is not None:
                self._cached_bytes -= len(old.answer.der)
            self._cache[key] = _Cached(answer, status, time.monotonic(), refresh)
            self._cached_bytes += size
        return answer

    def invalidate(self, serial: int) -> None:
        """Forget every cached answer for ``serial`` (its status just changed here)."""
        for key in [k for k in self._cache if k[1] == serial]:
            self._cached_bytes -= len(self._cache.pop(key).answer.der)

    def clear(self) -> None:
        self._cache.clear()
        self._cached_bytes = 0

    async def _status(
        self, ca: IssuingCA, serial: int
    ) -> tuple[str, datetime | None, RevocationReason | None]:
        try:
            cert = await self._store.get_certificate(serial)
        except NotFound:
            return ("unknown", None, None)
        if cert.issuer != ca.name:
            return ("unknown", None, None)  # that serial is another CA's
        if cert.status is CertStatus.REVOKED:
            return ("revoked", cert.revoked_at, cert.revocation_reason)
        return ("good", None, None)

    def _sign(
        self,
        ca: IssuingCA,
        cert_id: CertID,
        status: tuple[str, datetime | None, RevocationReason | None],
        *,
        nonce: bytes | None,
    ) -> OCSPAnswer:
        signer = self._signers.get(ca.name)
        this_update = self._clock.now().replace(microsecond=0)
        # A response must not outlive the certificate that vouches for its signature.
        next_update = min(this_update + self._validity, signer.not_after)
        der = build_response(
            signer,
            cert_id,
            status,
            this_update=this_update,
            next_update=next_update,
            nonce=nonce,
        )
        etag = '"' + hashlib.sha256(der).hexdigest()[:32] + '"'
        return OCSPAnswer(der, this_update, next_update, etag, cacheable=nonce is None)


def build_response(
    signer: OCSPSigner,
    cert_id: CertID,
    status: tuple[str, datetime | None, RevocationReason | None],
    *,
    this_update: datetime,
    next_update: datetime,
    nonce: bytes | None,
) -> bytes:
    kind, revoked_at, reason = status
    cert_status = {
        "good": ocsp.OCSPCertStatus.GOOD,
        "revoked": ocsp.OCSPCertStatus.REVOKED,
        "unknown": ocsp.OCSPCertStatus.UNKNOWN,
    }[kind]
    flag = None
    if reason is not None and reason is not RevocationReason.UNSPECIFIED:
        flag = REASON_FLAGS[reason]  # unspecified is left out, as on the CRL
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=cert_id.issuer_name_hash,
            issuer_key_hash=cert_id.issuer_key_hash,
            serial_number=cert_id.serial,
            algorithm=HASHES[cert_id.hash_algorithm],
            cert_status=cert_status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=revoked_at.replace(microsecond=0) if revoked_at else None,
            revocation_reason=flag,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.certificate)
        .certificates([signer.certificate])
    )
    if nonce is not None:
        # RFC 8954 §2.1: the responder echoes the request's nonce in the response.
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(signer.key, hashes.SHA256())
    return response.public_bytes(Encoding.DER)
