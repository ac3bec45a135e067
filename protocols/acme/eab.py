"""External Account Binding (RFC 8555 §7.3.4).

An administrator creates credentials (``certforge acme eab create``): a key id and an HMAC
key, kept as an ``acme-eab`` document. A newAccount request then carries, in its
"externalAccountBinding" field, a JWS over the account's public key MACed with that HMAC key.
A credential binds one account: once used, it is refused for any other key.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import replace

from protocols.acme.context import ACME
from protocols.acme.jws import eab_verify, parse_jwk, parse_jws
from protocols.acme.problems import ACMEProblem, ProblemType
from protocols.acme.records import rfc3339
from protocols.acme.requests import Verified
from server.errors import Conflict, NotFound
from server.model import Clock, Document
from server.store.base import Store

KIND = "acme-eab"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def create_credentials(store: Store, clock: Clock) -> tuple[str, str]:
    """A new key id and a 256-bit HMAC key (base64url), stored unbound."""
    kid = "kid-" + secrets.token_urlsafe(12)
    key = secrets.token_bytes(32)
    await store.put_doc(
        Document(KIND, kid, {"hmac_key": _b64(key), "created": rfc3339(clock.now())})
    )
    return kid, _b64(key)


async def check_binding(acme: ACME, verified: Verified, binding: object) -> str | None:
    """The EAB key id if a valid binding is present; refuses a missing one when required."""
    if binding is None:
        if acme.settings.eab_required:
            raise ACMEProblem(
                ProblemType.EXTERNAL_ACCOUNT_REQUIRED,
                "this server requires External Account Binding (externalAccountBinding)",
            )
        return None
    inner = parse_jws(binding)
    header = inner.protected
    kid = header.get("kid")
    # RFC 8555 §7.3.4: "The "url" header parameter MUST be set to the same value as the
    # outer JWS"; no "nonce"; the payload MUST be the account key ("jwk" of the outer JWS).
    if header.get("url") != verified.jws.protected.get("url") or "nonce" in header:
        raise ACMEProblem(
            ProblemType.MALFORMED, "the externalAccountBinding url must be newAccount's, no nonce"
        )
    if not isinstance(kid, str):
        raise ACMEProblem(ProblemType.MALFORMED, 'the externalAccountBinding needs a "kid"')
    try:
        doc = await acme.store.get_doc(KIND, kid)
    except NotFound:
        raise ACMEProblem(
            ProblemType.UNAUTHORIZED, "unknown External Account Binding key id", 401
        ) from None
    if doc.data.get("account"):
        raise ACMEProblem(
            ProblemType.UNAUTHORIZED, "this External Account Binding key is already used", 401
        )
    hmac_key = base64.urlsafe_b64decode(doc.data["hmac_key"] + "==")
    eab_verify(inner, hmac_key)
    if parse_jwk(inner.payload_json()).thumbprint != verified.key.thumbprint:
        raise ACMEProblem(
            ProblemType.MALFORMED, "the externalAccountBinding payload is not the account key"
        )
    return kid


async def bind(acme: ACME, kid: str, account_id: str) -> None:
    doc = await acme.store.get_doc(KIND, kid)
    try:
        await acme.store.update_doc(
            replace(doc, data={**doc.data, "account": account_id}), expect_version=doc.version
        )
    except Conflict:
        raise ACMEProblem(
            ProblemType.UNAUTHORIZED, "this External Account Binding key was just used", 401
        ) from None
