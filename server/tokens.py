"""Bearer tokens for the REST and admin APIs: create, list, revoke, expire, rotate.

A token is shown once, when created; the store keeps only its SHA-256 (a token has 256 bits
of entropy, so a slow hash adds nothing), as the document's id. A token's public id is the
first 16 hex digits of that digest: it names the token in lists and cannot be turned back
into it. Names need not be unique (a script's new token may carry the old one's name while
both are in use); revoking by a name that several active tokens share is refused, naming
their ids. Revoked and expired tokens stay listed. What each role may do: ``server/roles.py``.

Revocation across processes. Every worker, and every server sharing the store, trusts its
cached view of a token for ``FRESH_SECONDS`` only, then reads the token's document again (a
point read: tens of microseconds on SQLite, one round trip on MongoDB); the process that
revokes drops its own entry at once. A revoked token is so refused everywhere within
``FRESH_SECONDS`` plus one read, with nothing to broadcast and no crash window between two
writes; an expiry is checked against the clock on every request, cached or not. A request
authenticated before the revocation may still finish.

Last used. Authenticating notes the time in memory only; ``record_last_used_forever`` writes
it to the token's document in the background, at most once every ``LAST_USED_SECONDS`` per
token and process, so a busy token costs one write a minute, not one per request.

The bootstrap administrator token lives in ``<data dir>/admin.token``, mode 0600;
``rotate_bootstrap`` replaces it and revokes the one it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from server import config
from server.durable import write_atomic
from server.errors import Conflict, Malformed, NotFound, Unauthorized
from server.model import AuthMethod, Clock, Document, Requester, Role
from server.store.base import Store

log = logging.getLogger("certforge.tokens")

TOKEN_KIND = "token"  # noqa: S105 - the document kind, not a secret
BOOTSTRAP_NAME = "bootstrap-admin"
FRESH_SECONDS = 0.5  # how stale a process's view of a token may be (revocation's delay)
LAST_USED_SECONDS = 60.0
FLUSH_SECONDS = 5.0  # how often the last-used times noted in memory are looked at
CACHE_LIMIT = 10_000
MAX_LIFETIME = timedelta(days=3650)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration(text: str) -> timedelta:
    """A DURATION as the configuration reads it (``90m``, ``12h``, ``30d``, ``1d12h``), at
    most ``MAX_LIFETIME``; the client's ``Malformed`` otherwise."""
    try:
        lifetime = config.parse_duration(text)
    except ValueError as exc:
        raise Malformed(str(exc)) from None
    if lifetime > MAX_LIFETIME:
        raise Malformed(f"a token lives at most {MAX_LIFETIME.days}d")
    return lifetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def public_id(digest: str) -> str:
    return digest[:16]


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class TokenState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown of a token: everything but its secret."""

    id: str
    name: str
    roles: frozenset[Role]
    created_at: datetime | None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def from_doc(cls, doc: Document) -> TokenInfo:
        d = doc.data
        return cls(
            public_id(doc.id),
            str(d["name"]),
            frozenset(Role(r) for r in d["roles"]),
            _time(d.get("created_at")),
            _time(d.get("expires_at")),
            _time(d.get("last_used_at")),
            _time(d.get("revoked_at")),
        )

    def state(self, now: datetime) -> TokenState:
        if self.revoked_at is not None:
            return TokenState.REVOKED
        if self.expires_at is not None and now >= self.expires_at:
            return TokenState.EXPIRED
        return TokenState.ACTIVE

    def requester(self) -> Requester:
        return Requester(AuthMethod.TOKEN, self.name, self.roles)


@dataclass(frozen=True, slots=True)
class _Seen:
    """A process's view of one token, read from the store at ``read_at`` (monotonic)."""

    read_at: float
    info: TokenInfo | None  # None: no such token
    requester: Requester | None


class TokenService:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        fresh_seconds: float = FRESH_SECONDS,
        last_used_seconds: float = LAST_USED_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._fresh = fresh_seconds
        self._last_used_every = last_used_seconds
        self._cache: dict[str, _Seen] = {}
        self._used: dict[str, datetime] = {}  # digest -> last use not yet written
        self._written: dict[str, float] = {}  # digest -> when this process last wrote it

    # ------------------------------------------------------------ creating
    async def create(
        self, name: str, roles: Iterable[Role], *, lifetime: timedelta | None = None
    ) -> tuple[TokenInfo, str]:
        """A new token: what may be shown of it, and its secret (shown this once)."""
        if not _NAME.match(name):
            raise Malformed(
                "a token's name is 1 to 100 letters, digits and . _ @ + -,"
                " starting with a letter or digit"
            )
        wanted = frozenset(roles)
        if not wanted:
            raise Malformed("a token needs at least one role")
        if lifetime is not None and not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise Malformed(f"a token lives more than 0s and at most {MAX_LIFETIME.days}d")
        token = "cft_" + secrets.token_urlsafe(32)
        return await self._register(token, name, wanted, lifetime), token

    async def _register(
        self, token: str, name: str, roles: frozenset[Role], lifetime: timedelta | None = None
    ) -> TokenInfo:
        now = self._clock.now()
        data: dict[str, Any] = {
            "name": name,
            "roles": sorted(str(r) for r in roles),
            "created_at": now.isoformat(),
        }
        if lifetime is not None:
            data["expires_at"] = (now + lifetime).isoformat()
        doc = await self._store.put_doc(Document(TOKEN_KIND, _digest(token), data, lookup=name))
        return TokenInfo.from_doc(doc)

    # ------------------------------------------------------------- reading
    async def list_tokens(self) -> list[TokenInfo]:
        """Every token, revoked and expired ones included, oldest first."""
        tokens = [TokenInfo.from_doc(d) for d in await self._all_docs()]
        return sorted(tokens, key=lambda t: (t.created_at or _EPOCH, t.id))

    async def _all_docs(self) -> list[Document]:
        docs: list[Document] = []
        while page := await self._store.list_docs(TOKEN_KIND, after=docs[-1].id if docs else ""):
            docs += page
        return docs

    # ------------------------------------------------------------ revoking
    async def revoke(self, ref: str) -> TokenInfo:
        """Revoke the token with the public id ``ref``, else the one active token named
        ``ref``. ``NotFound``; ``Conflict`` if it is revoked already, or if several active
        tokens have that name."""
        doc = await self._resolve(ref)
        revoked = await self._revoke_doc(doc)
        if revoked is None:
            info = TokenInfo.from_doc(doc)
            raise Conflict(f"token {info.id} ({info.name}) was revoked already")
        return revoked

    async def _resolve(self, ref: str) -> Document:
        docs = await self._all_docs()
        by_id = [d for d in docs if public_id(d.id) == ref]
        if by_id:
            return by_id[0]
        now = self._clock.now()
        named = [d for d in docs if d.data["name"] == ref]
        active = [d for d in named if TokenInfo.from_doc(d).state(now) is TokenState.ACTIVE]
        if len(active) > 1:
            ids = ", ".join(public_id(d.id) for d in active)
            raise Conflict(f"{len(active)} active tokens are named {ref!r}; give one id: {ids}")
        if not active:
            raise NotFound(f"no token has the id {ref!r}, and no active token the name")
        return active[0]

    async def _revoke_doc(self, doc: Document) -> TokenInfo | None:
        """Mark it revoked (None if it was already); retried when a last-used write of
        another process changed the document meanwhile."""
        for _ in range(10):
            if "revoked_at" in doc.data:
                return None
            data = {**doc.data, "revoked_at": self._clock.now().isoformat()}
            try:
                new = await self._store.update_doc(
                    replace(doc, data=data), expect_version=doc.version
                )
            except Conflict:
                doc = await self._store.get_doc(TOKEN_KIND, doc.id)
                continue
            self._cache.pop(doc.id, None)  # refused in this process from now on
            return TokenInfo.from_doc(new)
        raise Conflict("the token kept changing; try again")

    # ------------------------------------------------------- authenticating
    async def authenticate(self, token: str) -> Requester:
        """The requester a bearer token stands for; ``Unauthorized`` if it is unknown,
        revoked or expired."""
        digest = _digest(token)
        seen = self._cache.get(digest)
        if seen is None or self._monotonic() - seen.read_at >= self._fresh:
            seen = await self._read(digest)
        if seen.info is None or seen.requester is None:
            raise Unauthorized("the bearer token is not valid")
        now = self._clock.now()
        match seen.info.state(now):
            case TokenState.REVOKED:
                raise Unauthorized("the bearer token was revoked")
            case TokenState.EXPIRED:
                raise Unauthorized("the bearer token expired")
            case TokenState.ACTIVE:
                pass
        self._used[digest] = now
        return seen.requester

    async def _read(self, digest: str) -> _Seen:
        read_at = self._monotonic()
        try:
            info: TokenInfo | None = TokenInfo.from_doc(
                await self._store.get_doc(TOKEN_KIND, digest)
            )
        except NotFound:
            info = None
        seen = _Seen(read_at, info, info.requester() if info else None)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[digest] = seen
        return seen

    # ------------------------------------------------------------ last used
    async def record_last_used_forever(self) -> None:
        """Write the noted last-used times, every ``FLUSH_SECONDS``, until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.record_last_used()

    async def record_last_used(self) -> None:
        """Write the last use of each token used since this process last wrote it, unless
        that was less than ``LAST_USED_SECONDS`` ago (then it waits for a later round)."""
        mono = self._monotonic()
        self._written = {
            d: at for d, at in self._written.items() if mono - at < self._last_used_every
        }
        for digest in [d for d in self._used if d not in self._written]:
            used = self._used.pop(digest)
            self._written[digest] = mono
            try:
                await self._write_last_used(digest, used)
            except Exception:  # a store error must not end the task: the next use retries
                log.warning("could not record a token's last use", exc_info=True)

    async def _write_last_used(self, digest: str, used: datetime) -> None:
        for _ in range(3):
            try:
                doc = await self._store.get_doc(TOKEN_KIND, digest)
            except NotFound:
                return
            stored = _time(doc.data.get("last_used_at"))
            if stored is not None and stored >= used:
                return  # another process wrote a later use
            data = {**doc.data, "last_used_at": used.isoformat()}
            with contextlib.suppress(Conflict):  # changed meanwhile: read it again
                await self._store.update_doc(replace(doc, data=data), expect_version=doc.version)
                return

    # ------------------------------------------------------------ bootstrap
    async def bootstrap(self, data_dir: Path) -> None:
        """Create ``admin.token`` on first start; re-register it if the store is new."""
        path = data_dir / "admin.token"
        if path.exists():
            token = path.read_text(encoding="utf-8").strip()
        else:
            token = "cft_" + secrets.token_urlsafe(32)
            write_atomic(path, (token + "\n").encode(), mode=0o600)
        os.chmod(path, 0o600)
        try:
            doc = await self._store.get_doc(TOKEN_KIND, _digest(token))
        except NotFound:
            # Another server sharing the store may have registered it first.
            with contextlib.suppress(Conflict):
                await self._register(token, BOOTSTRAP_NAME, frozenset({Role.ADMINISTRATOR}))
            return
        state = TokenInfo.from_doc(doc).state(self._clock.now())
        if state is not TokenState.ACTIVE:
            log.warning(
                "admin.token is %s: rotate it with another administrator's token"
                " ('certforge token rotate-bootstrap'), or remove the file and restart",
                state,
                extra={"path": str(path)},
            )

    async def rotate_bootstrap(self, data_dir: Path) -> tuple[TokenInfo, TokenInfo | None]:
        """Replace ``admin.token`` (atomically, mode 0600) with a new administrator token and
        revoke the one it held: the new token, and the revoked one (None if the file held
        none that was active). The new token is registered before the file is written, and
        the old one revoked after, so a crash between leaves a working ``admin.token``."""
        path = data_dir / "admin.token"
        async with _locked(data_dir / ".admin.token.lock"):  # two workers rotating at once
            try:
                old: str | None = path.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                old = None
            token = "cft_" + secrets.token_urlsafe(32)
            new = await self._register(token, BOOTSTRAP_NAME, frozenset({Role.ADMINISTRATOR}))
            await asyncio.to_thread(write_atomic, path, (token + "\n").encode(), mode=0o600)
            if not old:
                return new, None
            try:
                previous = await self._store.get_doc(TOKEN_KIND, _digest(old))
            except NotFound:
                return new, None
            return new, await self._revoke_doc(previous)


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    """An exclusive lock on ``path`` among processes; closing the descriptor releases it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
