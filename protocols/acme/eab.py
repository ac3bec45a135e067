"""External Account Binding (RFC 8555 §7.3.4).

An administrator creates credentials (``certforge acme eab create``): a key id and an HMAC
key, kept as an ``acme-eab`` document. A newAccount request then carries, in its
"externalAccountBinding" field, a JWS over the account's public key MACed with that HMAC key.
A credential binds one account: once used, it is refused for any other key. The account is
written only after its credential is claimed (``claim``: one conditional update of the
credential's document from the unbound version that was checked), so of concurrent
newAccounts with one credential exactly one gets an account and the others leave nothing
behind. A newAccount refused after its claim (its key already has an account, or a store
write fails) releases the credential (``release``), so it is not used up; a server stopping
between the claim and the account's write leaves the credential bound to no account, and an
administrator hands out a new one.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from dataclasses import dataclass, replace

from protocols.acme.context import ACME
from protocols.acme.jws import eab_verify, parse_jwk, parse_jws
from protocols.acme.problems import ACMEProblem, ProblemType, unauthorized
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


@dataclass(frozen=True, slots=True)
class Binding:
    """A verified binding: the credential's document as read, unbound, when it was checked."""

    doc: Document

    @property
    def kid(self) -> str:
        return self.doc.id


async def check_binding(acme: ACME, verified: Verified, binding: object) -> Binding | None:
    """The credential if a valid binding is present; refuses a missing one when required.
    Nothing is written: the credential is claimed by ``claim``."""
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
        raise unauthorized("unknown External Account Binding key id") from None
    if doc.data.get("account"):
        raise unauthorized("this External Account Binding key is already used")
    hmac_key = base64.urlsafe_b64decode(doc.data["hmac_key"] + "==")
    eab_verify(inner, hmac_key)
    if parse_jwk(inner.payload_json()).thumbprint != verified.key.thumbprint:
        raise ACMEProblem(
            ProblemType.MALFORMED, "the externalAccountBinding payload is not the account key"
        )
    return Binding(doc)


async def claim(acme: ACME, binding: Binding, account_id: str) -> Document:
    """Bind the credential to ``account_id`` if it is still as checked (unbound): one
    conditional write, so of concurrent claims exactly one wins. The claimed document."""
    doc = binding.doc
    try:
        return await acme.store.update_doc(
            replace(doc, data={**doc.data, "account": account_id}), expect_version=doc.version
        )
    except (Conflict, NotFound):  # NotFound: expired or removed since it was checked
        raise unauthorized("this External Account Binding key was just used") from None


async def release(acme: ACME, claimed: Document) -> None:
    """Unbind a credential claimed by a newAccount that then created no account, if nothing
    changed it since the claim."""
    data = {k: v for k, v in claimed.data.items() if k != "account"}
    # Changed or removed meanwhile (by an administrator): theirs to decide, left as it is.
    with contextlib.suppress(Conflict, NotFound):
        await acme.store.update_doc(replace(claimed, data=data), expect_version=claimed.version)
