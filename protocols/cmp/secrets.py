"""One-time shared secrets for MAC-protected CMP enrollment (RFC 9483 §3.2, §4.1.1).

An administrator creates one and hands the device a reference and a secret (``openssl cmp
-ref REFERENCE -secret pass:SECRET``); the device sends the reference as its senderKID and
MAC-protects with the secret. Unlike the SCEP and EST challenges (``server.challenges``,
kept as SHA-256), a MAC needs the secret itself, so it is kept **encrypted at rest**: a
store document of kind ``cmp-secret`` whose id is the reference, holding the secret sealed
with AES-256-GCM (the reference is the associated data, so a sealed secret cannot be moved
to another reference).

The sealing key is derived (HKDF-SHA256) from the ``master_key`` the caller passes. The
wiring must pass 32 random octets kept beside the CA keys, in the data directory (mode 0600,
like EST's ``est-serverkeygen.key``), and shared by every server that shares the store: a
server with another key cannot open the secrets, and refuses them as unknown.

Rules: a secret expires; it is used up by the first request that passes every check
(``use_secret``, one atomic ``take_doc``: of two concurrent users exactly one wins), never by
a refused one; it may be bound to one profile. The rest of that enrollment's transaction
(certConf, pollReq) is protected with the same secret, which the transaction keeps
(``protocols.cmp.transactions``), sealed the same way.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server import csprng
from server.errors import Malformed, NotFound
from server.model import Document
from server.store.base import Store

SECRET_KIND = "cmp-secret"  # noqa: S105 - a document kind
MASTER_KEY_BYTES = 32
REFERENCE_BYTES = 12  # 16 URL-safe characters
SECRET_BYTES = 24  # 192 bits; 32 URL-safe characters
MAX_LIFETIME = timedelta(days=365)
MAX_REFERENCE_CHARS = 64  # a longer senderKID cannot be one of ours


@dataclass(frozen=True, slots=True)
class SharedSecret:
    """What a reference names: the secret, the profile it is bound to (None: any), and
    whether using it once uses it up (a configured long-lived secret is not one-time)."""

    secret: bytes
    profile: str | None = None
    one_time: bool = True


class Sealer:
    """AES-256-GCM under a key derived from the wiring's master key, for secrets at rest."""

    def __init__(self, master_key: bytes, purpose: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise ValueError("the CMP master key must be 32 octets")
        key = HKDF(hashes.SHA256(), 32, salt=None, info=b"certforge cmp " + purpose).derive(
            master_key
        )
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, *, bound_to: bytes) -> str:
        nonce = csprng.token_bytes(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plaintext, bound_to)).decode()

    def open(self, sealed: str, *, bound_to: bytes) -> bytes | None:
        try:
            raw = base64.b64decode(sealed, validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], bound_to)
        except (ValueError, InvalidTag):
            return None  # sealed under another master key, or altered in the store


class OneTimeSecrets:
    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        master_key: bytes,
        default_lifetime: timedelta,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sealer = Sealer(master_key, b"one-time secrets")
        self._default_lifetime = default_lifetime

    async def create(
        self, *, profile: str | None = None, lifetime: timedelta | None = None
    ) -> tuple[str, str, datetime]:
        """A new (reference, secret, expiry); the secret is shown once, stored sealed."""
        lifetime = self._default_lifetime if lifetime is None else lifetime
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise Malformed("a CMP secret's lifetime must be between 1 second and 365 days")
        if profile is not None and not profile:
            raise Malformed("a CMP secret's profile, when given, must not be empty")
        reference = csprng.token_urlsafe(REFERENCE_BYTES)
        secret = csprng.token_urlsafe(SECRET_BYTES)
        now = self._clock()
        sealed = self._sealer.seal(secret.encode(), bound_to=reference.encode())
        await self._store.put_doc(
            Document(
                SECRET_KIND,
                reference,
                data={"profile": profile, "sealed": sealed, "created_at": now.isoformat()},
                expires_at=now + lifetime,
            )
        )
        return reference, secret, now + lifetime

    async def secret_for(self, reference: bytes) -> SharedSecret | None:
        """The unexpired, unused secret named by a senderKID, or None. Reading does not use
        it up: the MAC and everything else are checked first."""
        doc = await self._find(reference)
        if doc is None:
            return None
        secret = self._sealer.open(str(doc.data.get("sealed", "")), bound_to=reference)
        if secret is None:
            return None
        return SharedSecret(secret, doc.data.get("profile"))

    async def use_secret(self, reference: bytes) -> bool:
        """Use it up: True for exactly one caller (``take_doc`` is atomic), False when it
        was used, expired or removed meanwhile."""
        if await self._find(reference) is None:
            return False
        try:
            taken = await self._store.take_doc(SECRET_KIND, reference.decode())
        except NotFound:
            return False
        return taken.expires_at is None or taken.expires_at > self._clock()

    async def _find(self, reference: bytes) -> Document | None:
        if not reference or len(reference) > MAX_REFERENCE_CHARS:
            return None
        try:
            doc_id = reference.decode("ascii")
            doc = await self._store.get_doc(SECRET_KIND, doc_id)
        except (UnicodeDecodeError, NotFound):
            return None
        if doc.expires_at is not None and doc.expires_at <= self._clock():
            return None
        return doc
