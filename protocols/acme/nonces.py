"""Replay nonces (RFC 8555 §6.5, §7.2).

A nonce is issued without a store write: it is its expiry time and 128 random bits,
authenticated with an HMAC key that every certforge server sharing the store reads from one
``acme-nonce-key`` document (created by the first server to need it). Using a nonce is one
atomic write: ``put_doc`` of an ``acme-nonce`` marker that expires with the nonce; a second
use of the same nonce, at this or any other server, finds the marker (``Conflict``) and is
refused. So nonces are single-use across servers, a nonce from one server is good once at
another, and a response costs no write. The marker's write does not wait for the disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import struct
from datetime import UTC, datetime, timedelta

from aiohttp import web

from protocols.acme.context import ACME
from protocols.acme.jws import b64decode, b64encode
from protocols.acme.problems import ACMEProblem, ProblemType
from server import csprng
from server.errors import Conflict, NotFound
from server.model import Document
from server.store.base import Store

KIND, KEY_KIND, KEY_ID = "acme-nonce", "acme-nonce-key", "current"
_MAC_BYTES = 16
_LENGTH = 8 + 16 + _MAC_BYTES


class NonceKey:
    """The shared HMAC key, read from the store once per process."""

    def __init__(self) -> None:
        self._key: bytes | None = None
        self._lock = asyncio.Lock()

    async def get(self, store: Store) -> bytes:
        if self._key is None:
            async with self._lock:
                if self._key is None:
                    self._key = await _load_or_create(store)
        return self._key


async def _load_or_create(store: Store) -> bytes:
    try:
        return bytes.fromhex((await store.get_doc(KEY_KIND, KEY_ID)).data["key"])
    except NotFound:
        pass
    key = secrets.token_bytes(32)
    try:
        await store.put_doc(Document(KEY_KIND, KEY_ID, {"key": key.hex()}))
        return key
    except Conflict:  # another server created it first: use theirs
        return bytes.fromhex((await store.get_doc(KEY_KIND, KEY_ID)).data["key"])


NONCE_KEY = web.AppKey("acme_nonce_key", NonceKey)


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]


async def new_nonce(acme: ACME, key: bytes) -> str:
    # RFC 8555 §6.5: the value "MUST be an octet string, encoded according to the base64url
    # encoding"; 128 random bits make it unguessable, the MAC makes it ours.
    expires = acme.clock.now() + timedelta(seconds=acme.settings.nonce_lifetime_seconds)
    body = struct.pack(">Q", int(expires.timestamp())) + csprng.token_bytes(16)
    return b64encode(body + _mac(key, body))


async def use_nonce(acme: ACME, key: bytes, nonce: object) -> None:
    """RFC 8555 §6.5: "the server MUST ... reject the request" carrying a nonce it did not
    issue, or one already used, with a badNonce problem."""
    if not isinstance(nonce, str) or not nonce:
        raise ACMEProblem(ProblemType.BAD_NONCE, 'the protected header has no "nonce"')
    try:
        raw = b64decode(nonce, "the nonce")
    except ACMEProblem:
        raw = b""
    body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if len(raw) != _LENGTH or not hmac.compare_digest(mac, _mac(key, body)):
        raise ACMEProblem(ProblemType.BAD_NONCE, "the nonce was not issued by this server")
    expires = datetime.fromtimestamp(struct.unpack(">Q", body[:8])[0], UTC)
    if expires <= acme.clock.now():
        raise ACMEProblem(ProblemType.BAD_NONCE, "the nonce has expired")
    # Keyed by the octets' one spelling (b64decode accepts no other), so that no other
    # spelling of a used nonce passes for a new one.
    marker = Document(KIND, b64encode(raw), {}, expires_at=expires)
    try:
        # Not durable: the marker is committed (every reader, at every server, sees it) before
        # the request goes on, and a process crash keeps it; only a crash of the machine in the
        # next few milliseconds could lose it, making that one nonce usable once more.
        await acme.store.put_doc(marker, durable=False)
    except Conflict:
        raise ACMEProblem(ProblemType.BAD_NONCE, "the nonce was already used") from None


async def handle_new_nonce(request: web.Request) -> web.Response:
    """RFC 8555 §7.2: HEAD answers 200, GET 204; both carry Replay-Nonce (added by the
    headers middleware) and "Cache-Control: no-store".

    HEAD states its empty length: aiohttp (server) leaves Content-Length out of a HEAD answer,
    and aiohttp's client then closes the connection instead of reusing it (RFC 9110 §8.6
    allows the header on HEAD, with the length a GET answered with 200 would have: 0)."""
    if request.method == "HEAD":
        return web.Response(
            status=200, headers={"Cache-Control": "no-store", "Content-Length": "0"}
        )
    return web.Response(status=204, headers={"Cache-Control": "no-store"})
