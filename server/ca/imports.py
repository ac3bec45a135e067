"""Importing an existing CA as an issuing CA: a PEM certificate and key, or one PKCS#12 file.

The import is validated before anything is written: the key must sign with an algorithm
certforge uses, match the certificate, and the certificate (and every certificate above it in
the supplied chain) must be a CA. RFC 5280 §4.2.1.9: "If the basic constraints extension is
not present in a version 3 certificate, or the extension is present but the cA boolean is not
asserted, then the certified public key MUST NOT be used to verify certificate signatures."

Import files are read once, on the first start that needs them; the data directory keeps the
copy (the key re-encrypted with certforge's own passphrase). To replace an imported CA, remove
its ``ca/<name>.pem`` and ``ca/<name>.key.pem``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from server.ca.keystore import CAKey, as_ca_key
from server.config import IssuerConfig
from server.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ImportedCA:
    """A validated import: the CA certificate first, then intermediates, and its root if given."""

    chain: tuple[x509.Certificate, ...]
    key: CAKey
    root: x509.Certificate | None


def read_import(cfg: IssuerConfig) -> ImportedCA:
    """Read and validate an issuer's ``import_cert``/``import_key`` or ``import_pkcs12``."""
    where = f"[[ca.issuers]] {cfg.name}"
    password = _import_password(cfg, where)
    if cfg.import_pkcs12:
        raw_key, certs = _read_pkcs12(Path(cfg.import_pkcs12), password, where)
    else:
        raw_key, certs = _read_pem(Path(cfg.import_cert), Path(cfg.import_key), password, where)
    key = as_ca_key(raw_key, where)
    check_key_matches(certs[0], key, where)
    path = order_chain(certs[0], certs[1:])
    for cert in path:
        check_is_ca(cert, where)
    if is_self_signed(path[-1]):
        # The issuing CA may itself be a self-signed root; it is then both chain and root.
        return ImportedCA(chain=path[:-1] or path, key=key, root=path[-1])
    return ImportedCA(chain=path, key=key, root=None)


def _import_password(cfg: IssuerConfig, where: str) -> bytes | None:
    if not cfg.import_password_env:
        return None
    value = os.environ.get(cfg.import_password_env)
    if value is None:
        raise ConfigError(
            f"{where} import_password_env: the environment variable "
            f"{cfg.import_password_env} is unset"
        )
    return value.encode()


def _read(path: Path, where: str, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where} {key}: cannot read {path}: {exc.strerror}") from exc


def _read_pem(
    cert_path: Path, key_path: Path, password: bytes | None, where: str
) -> tuple[object, list[x509.Certificate]]:
    try:
        certs = x509.load_pem_x509_certificates(_read(cert_path, where, "import_cert"))
    except ValueError as exc:
        raise ConfigError(f"{where} import_cert: {cert_path} holds no PEM certificate") from exc
    key_pem = _read(key_path, where, "import_key")
    try:
        key = serialization.load_pem_private_key(key_pem, password=password)
    except TypeError as exc:
        hint = (
            "is encrypted: set import_password_env"
            if password is None
            else "is not encrypted: remove import_password_env"
        )
        raise ConfigError(f"{where} import_key: {key_path} {hint}") from exc
    except ValueError as exc:
        raise ConfigError(
            f"{where} import_key: cannot read {key_path}: not a PEM private key or wrong password"
        ) from exc
    return key, certs


def _read_pkcs12(
    path: Path, password: bytes | None, where: str
) -> tuple[object, list[x509.Certificate]]:
    try:
        key, cert, extra = pkcs12.load_key_and_certificates(
            _read(path, where, "import_pkcs12"), password
        )
    except ValueError as exc:
        raise ConfigError(
            f"{where} import_pkcs12: cannot read {path}: not PKCS#12 or wrong password"
        ) from exc
    if key is None or cert is None:
        raise ConfigError(f"{where} import_pkcs12: {path} must hold a certificate and its key")
    return key, [cert, *extra]


def check_key_matches(cert: x509.Certificate, key: CAKey, where: str) -> None:
    """Refuse a key that is not the certificate's: every signature would fail to verify."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ConfigError(f"{where}: the private key does not match the CA certificate")


def check_is_ca(cert: x509.Certificate, where: str) -> None:
    """Refuse a certificate that may not sign certificates (RFC 5280 §4.2.1.9, §4.2.1.3)."""
    subject = cert.subject.rfc4514_string()
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ConfigError(f"{where}: {subject} is not a CA certificate (basicConstraints cA)")
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    # RFC 5280 §4.2.1.3: keyCertSign is asserted when the key verifies certificate signatures.
    if not usage.key_cert_sign:
        raise ConfigError(f"{where}: {subject}'s key usage does not include keyCertSign")


def is_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``cert`` (names and signature both checked)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer and is_issued_by(cert, cert)


def order_chain(
    first: x509.Certificate, others: Sequence[x509.Certificate]
) -> tuple[x509.Certificate, ...]:
    """Follow issuers from ``first`` through ``others``, whatever order the file gave them in.

    Certificates that are not on the path are ignored: bundles often carry extras.
    """
    path, remaining = [first], list(others)
    while not is_self_signed(path[-1]):
        parent = next((c for c in remaining if is_issued_by(path[-1], c)), None)
        if parent is None:
            break
        path.append(parent)
        remaining.remove(parent)
    return tuple(path)
