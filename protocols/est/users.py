"""EST users: the names and passwords HTTP Basic authenticates (RFC 7030 §3.2.3).

``certforge est user add NAME`` (through the admin API) creates a user with a random password,
shown once. The store keeps a salted scrypt hash (RFC 7914; N=2^14, r=8, p=1), one document per
user, so guessing a stolen hash is slow.

A slow hash on every enrollment would make EST a few dozen enrollments per second per core, so
a successful check is remembered: ``VerifiedPasswords`` holds a keyed hash (random per-process
key) of the stored hash and the password that matched it. The user's document is re-read from
the store after a second, so a deleted user or a new password takes effect within a second,
also on other servers sharing the store; only the scrypt computation is saved for longer. A
wrong password is never remembered, and always costs a full scrypt, also for a user who does
not exist, so that the time of the answer does not tell which names exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field

from server.errors import Malformed, NotFound
from server.model import Clock, Document
from server.store.base import Store, StoreReader

USER_KIND = "est_user"
_ALL = "est_user"  # every user's lookup value, so that they can be listed
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")  # RFC 7617: no ':' in a user-id
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_CACHE_LIMIT = 10_000
RECHECK_SECONDS = 1.0  # a user document is re-read after this long (deletions show this fast)


def scrypt(password: str, salt: bytes, *, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 2**20, dklen=32)


@dataclass
class VerifiedPasswords:
    """Passwords that matched a stored hash, remembered as keyed BLAKE2b digests (see the module
    doc), and user documents, re-read from the store after ``recheck`` seconds."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    dummy_salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))  # unknown users
    recheck: float = RECHECK_SECONDS
    seen: set[bytes] = field(default_factory=set)
    users: dict[str, tuple[float, Document]] = field(default_factory=dict)

    def tag(self, stored_hash: str, password: str) -> bytes:
        # BLAKE2b runs without releasing the GIL for short inputs (HMAC through OpenSSL 3 does,
        # and waits for it back behind the store's threads).
        data = f"{stored_hash}\0{password}".encode()
        return hashlib.blake2b(data, key=self.key, digest_size=32).digest()

    def remember(self, tag: bytes) -> None:
        if len(self.seen) >= _CACHE_LIMIT:
            self.seen.clear()
        self.seen.add(tag)

    async def user(self, store: StoreReader, name: str) -> Document | None:
        cached = self.users.get(name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            doc = await store.get_doc(USER_KIND, name)
        except NotFound:
            self.users.pop(name, None)
            return None
        if len(self.users) >= _CACHE_LIMIT:
            self.users.clear()
        self.users[name] = (time.monotonic() + self.recheck, doc)
        return doc


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise Malformed(
            "an EST user name is 1 to 64 letters, digits, '.', '_', '@' or '-' (no ':')"
        )
    return name


async def add_user(store: Store, clock: Clock, name: str) -> str:
    """Create the user; return its new password. ``Conflict`` if the name is taken."""
    password = secrets.token_urlsafe(18)
    salt = secrets.token_bytes(16)
    digest = await asyncio.to_thread(scrypt, password, salt, **_SCRYPT)
    await store.put_doc(
        Document(
            USER_KIND,
            check_name(name),
            lookup=_ALL,
            data={
                "name": name,
                "salt": salt.hex(),
                "hash": digest.hex(),
                **_SCRYPT,
                "created_at": clock.now().isoformat(),
            },
        )
    )
    return password


async def list_users(store: StoreReader) -> list[dict[str, str]]:
    docs = await store.find_docs(USER_KIND, lookup=_ALL)
    return sorted(
        ({"name": str(d.data["name"]), "created_at": str(d.data["created_at"])} for d in docs),
        key=lambda u: u["name"],
    )


async def delete_user(store: Store, name: str) -> None:
    """``NotFound`` if there is no such user."""
    try:
        await store.take_doc(USER_KIND, check_name(name))
    except NotFound:
        raise NotFound(f"no EST user named {name!r}") from None


async def verify_password(
    store: StoreReader, verified: VerifiedPasswords, name: str, password: str
) -> bool:
    """Whether ``password`` is user ``name``'s. False for an unknown user."""
    doc = await verified.user(store, name)
    if doc is None:
        # The same scrypt work as for a known user's wrong password: otherwise a client told
        # unknown users (a few ms) from known ones (tens of ms) by the time of the answer.
        await asyncio.to_thread(scrypt, password, verified.dummy_salt, **_SCRYPT)
        return False
    data = doc.data
    tag = verified.tag(str(data["hash"]), password)
    if tag in verified.seen:
        return True
    digest = await asyncio.to_thread(
        scrypt,
        password,
        bytes.fromhex(str(data["salt"])),
        n=int(data["n"]),
        r=int(data["r"]),
        p=int(data["p"]),
    )
    if not hmac.compare_digest(digest.hex(), str(data["hash"])):
        return False
    verified.remember(tag)
    return True
