"""Bearer tokens for the REST and admin APIs (the administrative client's credentials).

A token is shown once, when created; the store keeps only its SHA-256 (a token has 256 bits
of entropy, so a slow hash adds nothing). Roles: administrator (everything), auditor
(read-only admin API), requester (enrollment with immediate issuance where the profile
allows). The bootstrap administrator token lives in ``<data dir>/admin.token``, mode 0600.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from contextlib import suppress
from pathlib import Path

from server.durable import write_atomic
from server.errors import Conflict, Malformed, NotFound, Unauthorized
from server.model import AuthMethod, Clock, Document, Requester, Role
from server.store.base import Store

TOKEN_KIND = "token"  # noqa: S105 - the document kind, not a secret
CACHE_SECONDS = 30.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._cache: dict[str, tuple[float, Requester]] = {}

    async def create(self, name: str, roles: frozenset[Role]) -> str:
        if not name or len(name) > 100:
            raise Malformed("a token needs a name of 1 to 100 characters")
        if not roles:
            raise Malformed("a token needs at least one role")
        token = "cft_" + secrets.token_urlsafe(32)
        await self._register(token, name, roles)
        return token

    async def _register(self, token: str, name: str, roles: frozenset[Role]) -> None:
        await self._store.put_doc(
            Document(
                TOKEN_KIND,
                _digest(token),
                lookup=name,
                data={
                    "name": name,
                    "roles": sorted(str(r) for r in roles),
                    "created_at": self._clock.now().isoformat(),
                },
            )
        )

    async def authenticate(self, token: str) -> Requester:
        """The requester a bearer token stands for; ``Unauthorized`` if it is unknown."""
        digest = _digest(token)
        cached = self._cache.get(digest)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        try:
            doc = await self._store.get_doc(TOKEN_KIND, digest)
        except NotFound:
            raise Unauthorized("the bearer token is not valid") from None
        requester = Requester(
            AuthMethod.TOKEN, str(doc.data["name"]), frozenset(Role(r) for r in doc.data["roles"])
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + CACHE_SECONDS, requester)
        return requester

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
            await self._store.get_doc(TOKEN_KIND, _digest(token))
        except NotFound:
            # Another server sharing the store may have registered it first.
            with suppress(Conflict):
                await self._register(token, "bootstrap-admin", frozenset({Role.ADMINISTRATOR}))
