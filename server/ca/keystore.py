"""CA private keys: generation, the hash each key signs with, and keys at rest.

Keys are written as PKCS#8 PEM, mode 0600, atomically (a temporary file, fsync, then
``os.replace`` and an fsync of the directory), so a crash leaves either the old file or the
new one, never half a key. With a passphrase configured they are encrypted with
``BestAvailableEncryption``; a key found unencrypted while a passphrase is configured is
re-encrypted in place. A missing or wrong passphrase is a ``ConfigError`` that says which key
and what to set, never a traceback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypeAlias

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PublicKeyTypes,
)

from server.config import CAConfig
from server.durable import write_atomic
from server.errors import ConfigError

log = logging.getLogger("certforge.ca")

CAKey: TypeAlias = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
SigningHash: TypeAlias = hashes.SHA256 | hashes.SHA384 | hashes.SHA512

_CURVES: dict[str, ec.EllipticCurve] = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1()}
_RSA_SIZES = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}
# CA/Browser Forum BR §7.1.3.2: P-256 signs with SHA-256, P-384 with SHA-384, P-521 SHA-512.
_CURVE_HASHES: dict[str, type[SigningHash]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def generate_key(key_type: str) -> CAKey:
    """Generate a CA key of a configured type (``server.config.KEY_TYPES``)."""
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type in _RSA_SIZES:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_SIZES[key_type])
    raise ConfigError(f"[ca] key_type: {key_type!r} is not a key type certforge generates")


def signing_hash(key: CertificateIssuerPrivateKeyTypes | PublicKeyTypes) -> SigningHash | None:
    """The hash a key signs certificates with; None for Ed25519, which hashes internally."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        try:
            return _CURVE_HASHES[key.curve.name]()
        except KeyError:
            raise ConfigError(f"curve {key.curve.name} cannot sign certificates") from None
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return None
    raise ConfigError(f"{type(key).__name__} keys cannot sign certificates")


def as_ca_key(key: object, where: str) -> CAKey:
    """Narrow a loaded key to the kinds that may sign, or say which file holds another kind."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signing_hash(key)  # refuses curves outside P-256, P-384 and P-521
        return key
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key
    kind = type(key).__name__.removesuffix("PrivateKey")
    raise ConfigError(f"{where}: {kind} keys cannot sign certificates; use ECDSA, RSA or Ed25519")


def load_passphrase(ca: CAConfig) -> bytes | None:
    """Read the passphrase that encrypts CA keys at rest, or None when none is configured."""
    if ca.passphrase_env and ca.passphrase_file:
        raise ConfigError("[ca] passphrase_env and passphrase_file: give one, not both")
    if ca.passphrase_env:
        value = os.environ.get(ca.passphrase_env, "")
        if not value:
            raise ConfigError(
                f"[ca] passphrase_env: the environment variable "
                f"{ca.passphrase_env} is unset or empty"
            )
        return value.encode()
    if ca.passphrase_file:
        try:
            text = Path(ca.passphrase_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"[ca] passphrase_file: cannot read {ca.passphrase_file}") from exc
        first_line = text.splitlines()[0] if text else ""
        if not first_line:
            raise ConfigError(
                f"[ca] passphrase_file: the first line of {ca.passphrase_file} is empty"
            )
        return first_line.encode()
    return None


def write_key(path: Path, key: CAKey, passphrase: bytes | None) -> None:
    """Write a private key at rest: PKCS#8, encrypted when a passphrase is configured."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    # The directory too is private: key file names and their churn are nobody else's business.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, pem, mode=0o600)


def read_key(path: Path, passphrase: bytes | None) -> CAKey:
    """Load a CA key written by ``write_key`` (or placed there by hand)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the CA key {path}: {exc.strerror}") from exc
    key: object
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # encrypted
        key = _decrypt(path, data, passphrase)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM private key") from exc
    else:
        if passphrase:
            log.warning("CA key %s was stored unencrypted; encrypting it now", path)
            write_key(path, as_ca_key(key, str(path)), passphrase)
    return as_ca_key(key, str(path))


def _decrypt(path: Path, data: bytes, passphrase: bytes | None) -> object:
    if not passphrase:
        raise ConfigError(
            f"the CA key {path} is encrypted: set [ca] passphrase_env or "
            "passphrase_file to its passphrase"
        )
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except ValueError as exc:
        raise ConfigError(f"cannot decrypt the CA key {path}: wrong passphrase") from exc
