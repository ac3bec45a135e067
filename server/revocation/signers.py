"""Delegated OCSP signing certificates, one per issuing CA that has OCSP (RFC 6960 §4.2.2.2).

Each issuing CA's responses are signed not by the CA's own key but by a short-lived
certificate the CA issues for the purpose, so the CA key stays out of the hot path:
- extKeyUsage id-kp-OCSPSigning (RFC 6960 §4.2.2.2: "MUST ... include the value of
  id-kp-OCSPSigning in an extended key usage extension"), keyUsage digitalSignature;
- id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1), so clients do not ask about the responder's own
  certificate, which is why it is short-lived (``[ocsp] signer_validity_days``);
- an ECDSA P-256 key, whatever the CA's key, for fast signing.

It is issued through ``Engine.issue_internal`` (recorded like every certificate, protocol
``internal``), kept in ``<data_dir>/ocsp/<issuer>.pem`` with its key beside it (encrypted like
the CA keys when a passphrase is configured), and replaced ``signer_renew_before_days`` before
it expires, or when it no longer chains to the CA. Several servers sharing a store each have
their own; all are valid.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.ca.imports import is_issued_by
from server.ca.issuers import IssuingCA
from server.ca.keystore import CAKey, read_key, write_key
from server.config import Config
from server.durable import write_atomic
from server.engine import Engine
from server.errors import Unavailable
from server.model import (
    AuthMethod,
    CertificateDraft,
    EnrollmentRequest,
    ExtraExtension,
    Requester,
    Role,
)
from server.monitor.watched import WatchSource

log = logging.getLogger("certforge.ocsp")

OCSP_RESPONDER = Requester(AuthMethod.TOKEN, "certforge-ocsp", frozenset({Role.ADMINISTRATOR}))
OCSP_PROFILE = "internal-ocsp"  # what the store records the signing certificates under
OCSP_NOCHECK = "1.3.6.1.5.5.7.48.1.5"  # id-pkix-ocsp-nocheck; its value is NULL
DER_NULL = b"\x05\x00"


@dataclass(frozen=True, slots=True)
class OCSPSigner:
    issuer: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc


class OCSPSigners:
    def __init__(self, *, config: Config, engine: Engine, passphrase: bytes | None) -> None:
        self._config = config
        self._engine = engine
        self._passphrase = passphrase
        self._dir = config.server.data_dir / "ocsp"
        self._signers: dict[str, OCSPSigner] = {}
        self._rotation_listeners: list[Callable[[], None]] = []

    def get(self, issuer: str) -> OCSPSigner:
        try:
            return self._signers[issuer]
        except KeyError:
            raise Unavailable(f"no OCSP signing certificate for {issuer!r} yet") from None

    def on_rotation(self, listener: Callable[[], None]) -> None:
        self._rotation_listeners.append(listener)

    def served(self) -> list[IssuingCA]:
        return [ca for ca in self._engine.cas.issuers.values() if self._config.ocsp.serves(ca.name)]

    async def ensure(self) -> None:
        """Load each CA's signer, issuing a new one where it is missing or due."""
        rotated = False
        for ca in self.served():
            signer = await asyncio.to_thread(self._load, ca)
            if signer is None or self._due(ca, signer):
                signer = await self._issue(ca)
                rotated = True
            self._signers[ca.name] = signer
            # No request may carry a signer's key (its previous ones stay reserved too).
            self._engine.reserved_keys.add(
                f"the OCSP signer of {ca.name}", signer.certificate.public_key()
            )
        if rotated:
            for listener in self._rotation_listeners:
                listener()

    def watch_source(self) -> WatchSource:
        """For the monitor: the signing certificate of each CA, as used now."""
        return WatchSource(
            "ocsp-signer",
            OCSP_PROFILE,
            lambda: [(s.issuer, s.certificate) for s in list(self._signers.values())],
        )

    async def renew_forever(self, interval: float = 3600.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.ensure()
            except Exception:
                log.exception("renewing OCSP signing certificates failed; will retry")

    def _load(self, ca: IssuingCA) -> OCSPSigner | None:
        cert_path, key_path = (self._dir / f"{ca.name}.pem", self._dir / f"{ca.name}.key.pem")
        if not (cert_path.exists() and key_path.exists()):
            return None
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = read_key(key_path, self._passphrase)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
            # Two workers renewing at once may leave one's key beside the other's certificate:
            # a mismatched pair is replaced, never used.
            return None
        return OCSPSigner(ca.name, key, cert)

    def _due(self, ca: IssuingCA, signer: OCSPSigner) -> bool:
        if not is_issued_by(signer.certificate, ca.certificate):
            return True  # the CA was replaced
        renew_at = signer.not_after - timedelta(days=self._config.ocsp.signer_renew_before_days)
        return self._engine.clock.now() >= renew_at

    async def _issue(self, ca: IssuingCA) -> OCSPSigner:
        key = ec.generate_private_key(ec.SECP256R1())
        common_name = f"{self._config.ca.name} {ca.name} OCSP Responder"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .sign(key, hashes.SHA256())
        )
        draft = CertificateDraft(
            profile=OCSP_PROFILE,
            issuer=ca.name,
            subject=(
                (NameOID.ORGANIZATION_NAME.dotted_string, self._config.ca.name),
                (NameOID.COMMON_NAME.dotted_string, common_name),
            ),
            sans=(),
            validity=timedelta(days=self._config.ocsp.signer_validity_days),
            key_type="ec-p256",
            key_usage=frozenset({"digitalSignature"}),
            extended_key_usage=(ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string,),
            extensions=(ExtraExtension(OCSP_NOCHECK, False, DER_NULL),),
        )
        req = EnrollmentRequest(
            csr.public_bytes(serialization.Encoding.DER), "internal", OCSP_RESPONDER
        )
        issued = await self._engine.issue_internal(req, draft)
        cert = x509.load_der_x509_certificate(issued.certificate.der)
        await asyncio.to_thread(self._save, ca, key, cert)
        log.info(
            "issued the OCSP signing certificate",
            extra={"issuer": ca.name, "serial": format(cert.serial_number, "x")},
        )
        return OCSPSigner(ca.name, key, cert)

    def _save(self, ca: IssuingCA, key: CAKey, cert: x509.Certificate) -> None:
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_path, key_path = self._dir / f"{ca.name}.pem", self._dir / f"{ca.name}.key.pem"
        write_key(key_path, key, self._passphrase)
        write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
