"""Replay nonces (RFC 8555 §6.5, §7.2).

A nonce is a store document: issuing one is an insert with an expiry, using one is
``take_doc``, the store's atomic delete-and-return. So a nonce is single-use across every
certforge server sharing the store, and one issued by a server is good at another.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from aiohttp import web

from protocols.acme.context import ACME
from protocols.acme.problems import ACMEProblem, ProblemType
from server.errors import NotFound
from server.model import Document

KIND = "acme-nonce"


async def new_nonce(acme: ACME) -> str:
    # RFC 8555 §6.5: the value "MUST be an octet string, encoded according to the base64url
    # encoding"; 128 random bits are unguessable.
    nonce = secrets.token_urlsafe(16)
    now = acme.clock.now()
    lifetime = timedelta(seconds=acme.settings.nonce_lifetime_seconds)
    await acme.store.put_doc(Document(KIND, nonce, {}, expires_at=now + lifetime))
    return nonce


async def use_nonce(acme: ACME, nonce: object) -> None:
    """RFC 8555 §6.5: "the server MUST ... reject the request" carrying a nonce it did not
    issue, or one already used, with a badNonce problem."""
    if not isinstance(nonce, str) or not nonce:
        raise ACMEProblem(ProblemType.BAD_NONCE, 'the protected header has no "nonce"')
    try:
        await acme.store.take_doc(KIND, nonce)
    except NotFound:
        raise ACMEProblem(
            ProblemType.BAD_NONCE, "the nonce is unknown, expired or already used"
        ) from None


async def handle_new_nonce(request: web.Request) -> web.Response:
    """RFC 8555 §7.2: HEAD answers 200, GET 204; both carry Replay-Nonce (added by the
    headers middleware) and "Cache-Control: no-store"."""
    status = 200 if request.method == "HEAD" else 204
    return web.Response(status=status, headers={"Cache-Control": "no-store"})
