"""What the CMP front end keeps in the data directory (``<data_dir>/cmp/``): the certificate
and key that sign its answers, and the master key that seals its secrets at rest.

Both are made at the server's start, under its start lock (``server.frontend``), so that
processes sharing the data directory load what the first made. The signer is an EC P-256
certificate of the default issuing CA with digitalSignature (``openssl cmp`` requires it of
a CMP signer), renewed at a start within ``[cmp] signer_renew_before_days`` of its expiry.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from protocols.cmp.config import CMPConfig
from protocols.cmp.secrets import MASTER_KEY_BYTES
from server.ca.keystore import load_passphrase, read_key, write_key
from server.config import Config
from server.durable import write_atomic
from server.engine import Engine
from server.errors import ConfigError
from server.model import AuthMethod, CertificateDraft, EnrollmentRequest, Requester, Role
from server.monitor.watched import WatchSource, leaf_of

log = logging.getLogger("certforge.cmp")

SIGNER_REQUESTER = Requester(
    AuthMethod.TOKEN, "certforge-cmp-signer", frozenset({Role.ADMINISTRATOR})
)
SIGNER_PROFILE = "internal-cmp-signer"  # what the store records signer certificates under


@dataclass(frozen=True, slots=True)
class Signer:
    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]  # the signer's certificate, then its issuers


def cmp_dir(config: Config) -> Path:
    return config.server.data_dir / "cmp"


def master_key(directory: Path) -> bytes:
    """32 random octets in ``master.key`` (mode 0600), made on the first start."""
    path = directory / "master.key"
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = os.urandom(MASTER_KEY_BYTES)
        write_atomic(path, key, mode=0o600)
        return key
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"{path} is not a CMP master key ({MASTER_KEY_BYTES} octets)")
    return key


def watch_source(config: Config) -> WatchSource:
    """The signer certificate, for the expiry monitor."""
    path = cmp_dir(config) / "signer.pem"
    return WatchSource("cmp-signer", SIGNER_PROFILE, lambda: [("cmp", c) for c in leaf_of(path)])


async def load_or_issue(config: Config, settings: CMPConfig, engine: Engine) -> Signer:
    issuer = engine.cas.issuer(config.profiles[settings.default_profile].issuer)
    directory = cmp_dir(config)
    cert_path, key_path = directory / "signer.pem", directory / "signer.key"
    passphrase = load_passphrase(config.ca)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = read_key(key_path, passphrase)
        # A signer issued shorter than asked (a profile's validity caps it) is renewed in its
        # last third, not at every start: each worker and server start would issue another.
        lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
        before = min(timedelta(days=settings.signer_renew_before_days), lifetime / 3)
        if (
            isinstance(key, ec.EllipticCurvePrivateKey)
            and _issued_by(cert, issuer.certificate)
            and engine.clock.now() < cert.not_valid_after_utc - before
        ):
            return Signer(key, (cert, *issuer.chain))
    key = ec.generate_private_key(ec.SECP256R1())
    name = f"{config.ca.name} CMP ({issuer.name})"
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    draft = CertificateDraft(
        profile=SIGNER_PROFILE,
        issuer=issuer.name,
        subject=((NameOID.COMMON_NAME.dotted_string, name),),
        sans=(),
        validity=timedelta(days=settings.signer_validity_days),
        key_type="ec-p256",
        key_usage=frozenset({"digitalSignature"}),
    )
    der = csr.public_bytes(serialization.Encoding.DER)
    req = EnrollmentRequest(der, "internal", SIGNER_REQUESTER)
    issued = await engine.issue_internal(req, draft)
    cert = x509.load_der_x509_certificate(issued.certificate.der)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_key(key_path, key, passphrase)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    log.info("issued the CMP signer certificate", extra={"serial": f"{cert.serial_number:x}"})
    return Signer(key, (cert, *issuer.chain))


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False  # the CA was replaced: issue a new signer
    return True
