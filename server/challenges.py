"""One-time challenge passwords, shared by the SCEP and EST front ends.

An administrator creates one (``certforge scep challenge``, or the admin API) and hands it to
a device, which presents it once when it enrolls. The store keeps only the password's SHA-256
as a document of kind ``challenge`` (a password has 128+ bits of entropy, so a slow hash adds
nothing); the password itself is shown once and never stored. A challenge may be bound to one
profile, and always expires.

Redeeming is atomic: ``Store.take_doc`` deletes and returns the document in one write, so of
concurrent redeemers exactly one wins. A redeemer asking for another profile than the one a
challenge is bound to is refused *without* burning it, so a mistaken endpoint does not cost
the device its password.

This module knows no protocol: SCEP and EST both call ``redeem`` with the profile resolved.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from server.errors import Malformed, NotFound
from server.model import Document
from server.store.base import Store

CHALLENGE_KIND = "challenge"
PASSWORD_BYTES = 24  # 192 bits of entropy; 32 URL-safe characters
MAX_LIFETIME = timedelta(days=365)
MAX_PASSWORD_CHARS = 256  # anything longer cannot be one of ours; not worth hashing


def _digest(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


class Challenges:
    def __init__(
        self, store: Store, clock: Callable[[], datetime], default_lifetime: timedelta
    ) -> None:
        self._store = store
        self._clock = clock
        self._default_lifetime = default_lifetime

    async def create(
        self, *, profile: str | None = None, lifetime: timedelta | None = None
    ) -> tuple[str, datetime]:
        """A new random one-time password (>= 128 bits, URL-safe text) and its expiry. Stored
        as a store Document of kind "challenge" keyed by sha256(password) hex (the password
        itself is never stored), bound to ``profile`` when given."""
        lifetime = self._default_lifetime if lifetime is None else lifetime
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise Malformed("a challenge's lifetime must be between 1 second and 365 days")
        if profile is not None and not profile:
            raise Malformed("a challenge's profile, when given, must not be empty")
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        now = self._clock()
        expires = now + lifetime
        await self._store.put_doc(
            Document(
                CHALLENGE_KIND,
                _digest(password),
                data={"profile": profile, "created_at": now.isoformat()},
                expires_at=expires,
            )
        )
        return password, expires

    async def redeem(self, password: str, *, profile: str) -> bool:
        """True once: atomically takes the document (of two concurrent redeemers exactly one
        wins); False when unknown, expired, already used, or bound to another profile (a
        wrong-profile attempt does not burn it)."""
        if not password or len(password) > MAX_PASSWORD_CHARS:
            return False
        digest = _digest(password)
        try:
            doc = await self._store.get_doc(CHALLENGE_KIND, digest)
        except NotFound:
            return False
        if not self._usable(doc, profile):
            return False
        try:
            taken = await self._store.take_doc(CHALLENGE_KIND, digest)
        except NotFound:
            return False  # another redeemer took it between our read and our take
        # Re-check what was taken: it is the same document unless it was replaced meanwhile.
        return self._usable(taken, profile)

    def _usable(self, doc: Document, profile: str) -> bool:
        if doc.expires_at is not None and doc.expires_at <= self._clock():
            return False
        bound = doc.data.get("profile")
        return bound is None or bound == profile
