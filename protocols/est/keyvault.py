"""Server-generated keys waiting for their client's retry (RFC 7030 §4.4, §4.2.3).

A serverkeygen request may be held for an administrator. The certificate will be signed for
the public key of the request the engine recorded, so the key pair must exist from the start
and be kept until the client's retry collects it: generating it only on the retry would make
the approved request (and the certificate policy judged) name a key nobody holds. RFC 7030
§4.4.2 answers a pending serverkeygen like a pending simpleenroll (202, §4.2.3), and the
retry gets the key with the certificate.

While it waits, the key is kept in the store sealed: AES-256-GCM (``cryptography``'s AEAD)
under a random key held in the data directory (``est-serverkeygen.key``, mode 0600), with the
document's id as associated data, so a copy of the store alone reveals no private key. Servers
sharing one store must share this file, as they share the CA keys.

Crash safety: the sealed key is written *before* the request is submitted (its document is
named after the new public key, which the request record carries), so a request never exists
without its key; it is removed as soon as the request is decided at once, or its decision is
delivered on a retry. A stop before the request is recorded leaves only a sealed key that
expires (``KEEP``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_private_key,
)
from cryptography.x509 import load_der_x509_csr

from protocols.est.pending import KEEP
from server.errors import ConfigError, NotFound
from server.model import Clock, Document
from server.store.base import Store

KEY_KIND = "est_serverkeygen_key"
KEY_FILE = "est-serverkeygen.key"
_NONCE = 12


@dataclass(frozen=True, slots=True)
class KeySeal:
    """AES-256-GCM under the data directory's key."""

    key: bytes

    @classmethod
    def load_or_create(cls, path: Path) -> KeySeal:
        """Read the sealing key; on first use, create it. Several workers may race here: the
        file is linked into place only if absent, so all of them read the same key."""
        with suppress(FileNotFoundError):
            return cls._read(path)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".est-key-")
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
            os.close(fd)
            with suppress(FileExistsError):
                os.link(tmp, path)  # mkstemp made it 0600
        finally:
            os.unlink(tmp)
        return cls._read(path)

    @classmethod
    def _read(cls, path: Path) -> KeySeal:
        key = path.read_bytes()
        if len(key) != 32:
            raise ConfigError(f"{path} must hold 32 bytes (a key certforge made); it does not")
        return cls(key)

    def seal(self, plaintext: bytes, context: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        return (nonce + AESGCM(self.key).encrypt(nonce, plaintext, context.encode())).hex()

    def open(self, sealed: str, context: str) -> bytes:
        blob = bytes.fromhex(sealed)
        return AESGCM(self.key).decrypt(blob[:_NONCE], blob[_NONCE:], context.encode())


def key_id(public_key_der: bytes) -> str:
    """The document id of a waiting key: the SHA-256 of its SubjectPublicKeyInfo."""
    return hashlib.sha256(public_key_der).hexdigest()


def key_id_of_pkcs8(pkcs8_der: bytes) -> str:
    public = load_der_private_key(pkcs8_der, None).public_key()
    return key_id(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def key_id_of_csr(csr_der: bytes) -> str:
    """The waiting key's id, from the request recorded for it (which certforge signed)."""
    public = load_der_x509_csr(csr_der).public_key()
    return key_id(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


async def keep(store: Store, clock: Clock, seal: KeySeal, pkcs8_der: bytes) -> str:
    """Store the sealed key until its retry; returns its document id."""
    doc_id = key_id_of_pkcs8(pkcs8_der)
    sealed = seal.seal(pkcs8_der, doc_id)
    await store.put_doc(
        Document(KEY_KIND, doc_id, data={"sealed": sealed}, expires_at=clock.now() + KEEP)
    )
    return doc_id


async def load(store: Store, seal: KeySeal, doc_id: str) -> bytes:
    """The waiting key. ``NotFound`` if it is gone (delivered, expired); a key that does not
    open under this server's seal is gone too."""
    doc = await store.get_doc(KEY_KIND, doc_id)
    try:
        return seal.open(str(doc.data["sealed"]), doc_id)
    except (InvalidTag, ValueError, KeyError) as exc:
        raise NotFound("the key generated for this request is no longer available") from exc


async def discard(store: Store, doc_id: str) -> None:
    with suppress(NotFound):
        await store.take_doc(KEY_KIND, doc_id)
