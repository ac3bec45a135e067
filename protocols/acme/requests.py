"""Authenticating a POST (RFC 8555 §6.2-§6.5): JWS, URL, key or account, nonce.

The checks run in this order, each raising the RFC's problem type; the nonce is consumed
last, so a request refused earlier leaves its nonce usable and records nothing:

1. "Content-Type: application/jose+json" (§6.2: otherwise 415).
2. The body is a flattened JWS with an accepted "alg" (badSignatureAlgorithm).
3. The "url" header equals the URL the request was sent to (§6.4: unauthorized).
4. Exactly one of "jwk" and "kid" (§6.2), the one this resource takes; a "kid" names an
   existing, valid account (accountDoesNotExist, unauthorized).
5. The signature verifies with that key (malformed).
6. The "nonce" is one this server issued and unused (§6.5: badNonce).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from aiohttp import web

from protocols.acme.context import ACME
from protocols.acme.jws import JWS, AccountKey, check_algorithm, parse_jwk, parse_jws
from protocols.acme.jws import verify_signature as verify_jws_signature
from protocols.acme.nonces import NONCE_KEY, use_nonce
from protocols.acme.problems import ACMEProblem, ProblemType, unauthorized
from protocols.acme.records import ACCOUNT, Account, AccountStatus
from server.errors import NotFound
from server.web.body import read_body

JOSE_JSON = "application/jose+json"


class KeyBy(Enum):
    KID = "kid"  # every resource but the two below
    JWK = "jwk"  # newAccount
    EITHER = "either"  # revokeCert: the account's key, or the certificate's own key


@dataclass(frozen=True, slots=True)
class Verified:
    jws: JWS
    key: AccountKey
    account: Account | None  # None when signed with a "jwk"

    @property
    def is_post_as_get(self) -> bool:
        """RFC 8555 §6.3: a POST-as-GET has a zero-length payload."""
        return self.jws.payload == b""

    def payload(self) -> dict[str, Any]:
        if self.is_post_as_get:
            raise ACMEProblem(ProblemType.MALFORMED, "this resource needs a JSON payload")
        return self.jws.payload_json()

    def require_account(self) -> Account:
        if self.account is None:  # only reachable for KeyBy.EITHER resources
            raise ACMEProblem(ProblemType.MALFORMED, 'this request must be signed with "kid"')
        return self.account


async def verify_post(request: web.Request, acme: ACME, *, key_by: KeyBy = KeyBy.KID) -> Verified:
    # 1. RFC 8555 §6.2: a request without this content type gets 415.
    if request.content_type != JOSE_JSON:
        raise ACMEProblem(ProblemType.MALFORMED, f"the Content-Type must be {JOSE_JSON}", 415)
    # 2.
    jws = parse_jws(await read_body(request))
    check_algorithm(jws)
    # 3. RFC 8555 §6.4: "the server MUST reject the request as unauthorized" if the "url"
    # header differs from the request URL.
    url = jws.protected.get("url")
    if not isinstance(url, str):
        raise ACMEProblem(ProblemType.MALFORMED, 'the protected header has no "url"')
    if url != acme.request_url(request):
        raise unauthorized(f"the JWS url {url!r} is not this request's URL")
    # 4.
    key, account = await _signer(jws, acme, key_by)
    # 5.
    verify_jws_signature(jws, key)
    # 6.
    key_of_nonces = await request.config_dict[NONCE_KEY].get(acme.store)
    await use_nonce(acme, key_of_nonces, jws.protected.get("nonce"))
    return Verified(jws, key, account)


async def _signer(jws: JWS, acme: ACME, key_by: KeyBy) -> tuple[AccountKey, Account | None]:
    """RFC 8555 §6.2: "The "jwk" and "kid" fields are mutually exclusive. Servers MUST reject
    requests that contain both"; newAccount and revokeCert-by-certificate-key use "jwk",
    every other request "kid"."""
    has_jwk, has_kid = "jwk" in jws.protected, "kid" in jws.protected
    if has_jwk == has_kid:
        raise ACMEProblem(ProblemType.MALFORMED, 'the JWS needs exactly one of "jwk" and "kid"')
    if has_jwk:
        if key_by is KeyBy.KID:
            raise ACMEProblem(
                ProblemType.MALFORMED, 'this request must be signed by an account ("kid")'
            )
        return parse_jwk(jws.protected["jwk"]), None
    if key_by is KeyBy.JWK:
        raise ACMEProblem(ProblemType.MALFORMED, 'newAccount must carry the key as "jwk"')
    account = await load_account(acme, jws.protected["kid"])
    return parse_jwk(account.jwk), account


async def load_account(acme: ACME, kid: object) -> Account:
    account_id = acme.urls.account_id(kid) if isinstance(kid, str) else None
    if account_id is None:
        raise ACMEProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, f"{kid!r} is not an account URL")
    try:
        account = Account.from_doc(await acme.store.get_doc(ACCOUNT, account_id))
    except NotFound:
        raise ACMEProblem(
            ProblemType.ACCOUNT_DOES_NOT_EXIST, "there is no account at this URL"
        ) from None
    # RFC 8555 §7.3.6: requests signed by a deactivated account are rejected as unauthorized.
    if account.status is not AccountStatus.VALID:
        raise unauthorized(f"the account is {account.status}")
    return account
