"""The CA's SCEP identity: who opens pkcsPKIEnvelopes and signs CertReps, per issuing CA.

SCEP clients encrypt to an RSA key (RFC 8894 §3.5.2: key transport is RSA). When the issuing
CA's key is RSA, the CA itself is the SCEP identity. When it is not (certforge's default is
ECDSA P-256), certforge keeps an RSA-2048 RA certificate issued by that CA, with keyUsage
digitalSignature and keyEncipherment (RFC 8894 §2.5.1: an RA certificate used for both
needs both), and GetCACert answers with the RA and CA certificates (§4.2.1.2).

The RA certificate and key live in ``<data dir>/scep/ra-<issuer>.pem`` and ``.key`` (mode
0600, encrypted when a CA passphrase is configured). It is issued like every certificate
(recorded, protocol ``internal``) and renewed ``[scep] ra_renew_before_days`` before it
expires; the previous RA key still opens envelopes sealed to it until it expires.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import NameOID

from protocols.scep.certrep import Signer
from protocols.scep.config import SECTION
from protocols.scep.envelope import Recipient
from server.ca.keystore import load_passphrase, read_key, write_key
from server.config import Config
from server.durable import write_atomic
from server.engine import Engine
from server.errors import ConfigError
from server.model import AuthMethod, CertificateDraft, EnrollmentRequest, Requester, Role
from server.monitor.watched import WatchSource, leaf_of

log = logging.getLogger("certforge.scep")

RA_REQUESTER = Requester(AuthMethod.TOKEN, "certforge-scep-ra", frozenset({Role.ADMINISTRATOR}))
RA_PROFILE = "internal-scep-ra"  # what the store records RA certificates under
RA_KEY_BITS = 2048
RELOAD_SECONDS = 5.0  # a message sealed to an unknown RA rereads the disk at most this often


@dataclass(frozen=True)
class Identity:
    """Everything SCEP needs of one issuing CA."""

    issuer: str
    ca: x509.Certificate
    ra: x509.Certificate | None
    signer: Signer
    recipients: list[Recipient] = field(default_factory=list)

    def ca_certs(self) -> tuple[bytes, str]:
        """GetCACert's body and content type (RFC 8894 §4.2.1)."""
        if self.ra is None:
            return self.ca.public_bytes(Encoding.DER), "application/x-x509-ca-cert"
        # §4.2.1.2: "a certificates-only CMS message containing the CA and RA certificates".
        body = pkcs7.serialize_certificates([self.ra, self.ca], Encoding.DER)
        return body, "application/x-x509-ca-ra-cert"


def watch_source(config: Config) -> WatchSource:
    """For the expiry monitor: each issuing CA's RA certificate in use, read from the data
    directory (any worker may have renewed it, and worker 0, which runs the monitor, may never
    have served SCEP); none for a CA that is its own SCEP identity."""
    directory = config.server.data_dir / "scep"

    def read() -> list[tuple[str, x509.Certificate]]:
        issuers = [i.name for i in config.ca.issuers]
        return [(name, c) for name in issuers for c in leaf_of(directory / f"ra-{name}.pem")]

    return WatchSource("scep-ra", RA_PROFILE, read)


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _ra_paths(directory: Path, issuer: str) -> tuple[Path, Path]:
    return directory / f"ra-{issuer}.pem", directory / f"ra-{issuer}.key"


def stored_ra_keys(config: Config) -> list[tuple[str, PublicKeyTypes]]:
    """The RA keys already in the data directory, for the engine to reserve at start: the
    identities are loaded on the first SCEP request, and until then a request through
    another front end could carry an RA's key."""
    keys: list[tuple[str, PublicKeyTypes]] = []
    for issuer in config.ca.issuers:
        cert_path, _ = _ra_paths(config.server.data_dir / "scep", issuer.name)
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except (OSError, ValueError):
            continue  # none yet (it is made on first use), or unreadable: _load replaces it
        keys.append((f"the SCEP RA of {issuer.name}", cert.public_key()))
    return keys


class Identities:
    def __init__(self, config: Config, engine: Engine) -> None:
        self._config = config
        self._engine = engine
        self._dir = config.server.data_dir / "scep"
        self._passphrase = load_passphrase(config.ca)
        self._identities: dict[str, Identity] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reloaded: dict[str, float] = {}  # monotonic time of the last read from disk

    async def of(self, issuer: str) -> Identity:
        """The issuer's SCEP identity, (re)issuing its RA certificate when due."""
        identity = self._identities.get(issuer)
        if identity is not None and not self._due(identity):
            return identity
        return await self.reload(issuer, stale=identity)

    async def reload(self, issuer: str, *, stale: Identity | None) -> Identity:
        """Read the RA again from the data directory (another process sharing it may have
        renewed it), issuing a new one when there is none or it is due."""
        async with self._locks.setdefault(issuer, asyncio.Lock()):
            identity = self._identities.get(issuer)
            recently = time.monotonic() - self._reloaded.get(issuer, -RELOAD_SECONDS)
            if identity is stale and (
                identity is None or self._due(identity) or recently >= RELOAD_SECONDS
            ):
                self._reloaded[issuer] = time.monotonic()
                identity = await self._load_or_issue(issuer, previous=identity)
                self._identities[issuer] = identity
        assert identity is not None  # noqa: S101 - set just above, or by the lock's holder
        return identity

    def _due(self, identity: Identity) -> bool:
        return identity.ra is not None and self._due_cert(identity.ra)

    def _paths(self, issuer: str) -> tuple[Path, Path]:
        return _ra_paths(self._dir, issuer)

    async def _load_or_issue(self, issuer: str, previous: Identity | None) -> Identity:
        ca = self._engine.cas.issuer(issuer)
        if isinstance(ca.key, rsa.RSAPrivateKey):
            signer = Signer(_asn1(ca.certificate), ca.key)
            recipient = Recipient(signer.certificate, ca.key)
            return Identity(issuer, ca.certificate, None, signer, [recipient])
        # Processes sharing the data directory (prefork workers) agree on one RA: whoever
        # holds the lock issues it, the others then load it.
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._dir / f".ra-{issuer}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            loaded = await asyncio.to_thread(self._load, issuer, ca.certificate)
            if loaded is None or self._due_cert(loaded[0]):
                loaded = await self._issue(issuer)
        finally:
            os.close(fd)  # releases the lock
        cert, key = loaded
        self._engine.reserved_keys.add(f"the SCEP RA of {issuer}", cert.public_key())
        signer = Signer(_asn1(cert), key)
        recipients = [Recipient(signer.certificate, key)]
        if previous is not None and previous.ra is not None:
            now = self._engine.clock.now()
            recipients += [
                r
                for r in previous.recipients
                if r.certificate.dump() != signer.certificate.dump()
                and r.certificate.not_valid_after > now  # expired RAs are dropped
            ]
        return Identity(issuer, ca.certificate, cert, signer, recipients)

    def _due_cert(self, cert: x509.Certificate) -> bool:
        before = timedelta(days=SECTION.of(self._config).ra_renew_before_days)
        return self._engine.clock.now() >= cert.not_valid_after_utc - before

    def _load(
        self, issuer: str, ca: x509.Certificate
    ) -> tuple[x509.Certificate, rsa.RSAPrivateKey] | None:
        cert_path, key_path = self._paths(issuer)
        if not (cert_path.exists() and key_path.exists()):
            return None
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return None  # the CA was replaced: issue a new RA
        key = read_key(key_path, self._passphrase)
        if not isinstance(key, rsa.RSAPrivateKey) or key.public_key() != cert.public_key():
            raise ConfigError(f"{key_path} is not the RSA key of {cert_path}")
        return cert, key

    async def _issue(self, issuer: str) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        key = await asyncio.to_thread(rsa.generate_private_key, 65537, RA_KEY_BITS)
        name = f"{self._config.ca.name} SCEP RA ({issuer})"
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256())
        )
        draft = CertificateDraft(
            profile=RA_PROFILE,
            issuer=issuer,
            subject=((NameOID.COMMON_NAME.dotted_string, name),),
            sans=(),
            validity=timedelta(days=SECTION.of(self._config).ra_validity_days),
            key_type=f"rsa-{RA_KEY_BITS}",
            key_usage=frozenset({"digitalSignature", "keyEncipherment"}),
        )
        req = EnrollmentRequest(csr.public_bytes(Encoding.DER), "internal", RA_REQUESTER)
        issued = await self._engine.issue_internal(req, draft)
        cert = x509.load_der_x509_certificate(issued.certificate.der)
        cert_path, key_path = self._paths(issuer)
        await asyncio.to_thread(write_key, key_path, key, self._passphrase)
        await asyncio.to_thread(
            write_atomic, cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644
        )
        log.info(
            "issued the SCEP RA certificate",
            extra={"issuer": issuer, "serial": format(cert.serial_number, "x")},
        )
        return cert, key
