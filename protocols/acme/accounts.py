"""Accounts (RFC 8555 §7.3): newAccount, External Account Binding (§7.3.4), account update
and deactivation (§7.3.2, §7.3.6), key rollover (§7.3.5).

One key belongs to at most one account: the ``acme-key`` document (id: the key's thumbprint)
is inserted with ``put_doc``, which refuses a second insert, so two servers creating an
account for one key concurrently end up with one account. The account document is written
before that link, so a link always names an existing account. With External Account
Binding the credential is claimed before either is written (``eab.claim``): one credential,
one account, also under concurrent newAccounts. Not supported: account orders' pagination
(the list is returned whole).

A key an account rolled over from is released (another account may take it up) but
remembered as an ``acme-old-key`` document, which finalize consults (``protocols/acme/csr.py``).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from aiohttp import web

from protocols.acme import eab
from protocols.acme.context import ACME
from protocols.acme.jws import AccountKey, parse_jwk, parse_jws, verify_signature
from protocols.acme.problems import ACMEProblem, ProblemType, unauthorized
from protocols.acme.ratelimits import check_and_count
from protocols.acme.records import (
    ACCOUNT,
    ACCOUNT_KEY,
    OLD_ACCOUNT_KEY,
    ORDER,
    Account,
    AccountStatus,
    Order,
    rfc3339,
    save,
)
from protocols.acme.render import acme_json
from protocols.acme.requests import KeyBy, Verified, verify_post
from server import csprng
from server.errors import Conflict, NotFound
from server.model import Document

_EMAIL = re.compile(r"[^@\s,]+@[^@\s,]+\.[^@\s,]+\Z")
MAX_CONTACTS = 10


def account_json(acme: ACME, account: Account) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": str(account.status),
        "contact": account.contact,
        "termsOfServiceAgreed": account.tos_agreed,
        "orders": acme.urls.orders(account.id),
        "key": account.jwk,
        "createdAt": account.created_at,
    }
    return body


def parse_contact(value: object) -> list[str]:
    """RFC 8555 §7.3: "mailto:" URLs only; anything else is unsupportedContact."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ACMEProblem(ProblemType.MALFORMED, '"contact" must be an array of URLs')
    if len(value) > MAX_CONTACTS:
        raise ACMEProblem(ProblemType.MALFORMED, f"at most {MAX_CONTACTS} contacts")
    for contact in value:
        scheme, _, address = contact.partition(":")
        if scheme.lower() != "mailto":
            raise ACMEProblem(
                ProblemType.UNSUPPORTED_CONTACT, f"only mailto: contacts are supported: {contact}"
            )
        if not _EMAIL.match(address):
            raise ACMEProblem(ProblemType.INVALID_CONTACT, f"{contact!r} is not an email address")
    return list(value)


async def account_for_key(acme: ACME, thumbprint: str) -> Account | None:
    try:
        link = await acme.store.get_doc(ACCOUNT_KEY, thumbprint)
        return Account.from_doc(await acme.store.get_doc(ACCOUNT, link.data["account"]))
    except NotFound:
        return None


async def new_account(request: web.Request) -> web.Response:
    acme = ACME.of(request)
    verified = await verify_post(request, acme, key_by=KeyBy.JWK)
    payload = verified.payload()
    existing = await account_for_key(acme, verified.key.thumbprint)
    if existing is not None:
        # RFC 8555 §7.3.1: the existing account, 200 with its URL in Location.
        return acme_json(account_json(acme, existing), location=acme.urls.account(existing.id))
    if payload.get("onlyReturnExisting") is True:
        raise ACMEProblem(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no account has this key")
    account = await _create_account(request, acme, verified, payload)
    return acme_json(
        account_json(acme, account), status=201, location=acme.urls.account(account.id)
    )


async def _create_account(
    request: web.Request, acme: ACME, verified: Verified, payload: dict[str, Any]
) -> Account:
    contact = parse_contact(payload.get("contact"))
    agreed = payload.get("termsOfServiceAgreed", False)
    if not isinstance(agreed, bool):
        raise ACMEProblem(ProblemType.MALFORMED, '"termsOfServiceAgreed" must be a boolean')
    if acme.settings.terms_of_service and not agreed:
        raise ACMEProblem(
            ProblemType.USER_ACTION_REQUIRED,
            "agree to the terms of service (termsOfServiceAgreed)",
            403,
            extra={"instance": acme.settings.terms_of_service},
        )
    binding = await eab.check_binding(acme, verified, payload.get("externalAccountBinding"))
    await check_and_count(
        acme,
        [f"address:{request.remote}"],
        acme.settings.accounts_per_address_per_hour,
        "new accounts",
    )
    account = Account(
        id=csprng.token_urlsafe(12),
        jwk=verified.key.jwk,
        thumbprint=verified.key.thumbprint,
        contact=contact,
        tos_agreed=agreed,
        eab_kid=None if binding is None else binding.kid,
        created_at=rfc3339(acme.clock.now()),
    )
    if binding is None:
        return await _write_account(acme, account)
    # RFC 8555 §7.3.4: the credential binds this account; claimed before anything is
    # written, so a newAccount losing the claim to a concurrent one leaves nothing behind.
    claimed = await eab.claim(acme, binding, account.id)
    try:
        written = await _write_account(acme, account)
    except BaseException:  # also a cancelled request: it created no account
        await eab.release(acme, claimed)
        raise
    if written.id != account.id:  # the key had an account already: this one was not made
        await eab.release(acme, claimed)
    return written


async def _write_account(acme: ACME, account: Account) -> Account:
    """Write the account, then the link from its key; if a concurrent request linked the key
    first, remove this account and return that one. The account is written first so that a
    link always names an account that exists."""
    await acme.store.put_doc(account.to_doc())
    try:
        await acme.store.put_doc(Document(ACCOUNT_KEY, account.thumbprint, {"account": account.id}))
    except Conflict:
        with contextlib.suppress(NotFound):
            await acme.store.take_doc(ACCOUNT, account.id)
        raced = await account_for_key(acme, account.thumbprint)
        if raced is None:
            raise
        return raced
    return account


async def update_account(request: web.Request) -> web.Response:
    """RFC 8555 §7.3.2 (update contact), §7.3.3 (agree to changed terms), §7.3.6
    (deactivate); a POST-as-GET returns the account."""
    acme = ACME.of(request)
    verified = await verify_post(request, acme)
    account = verified.require_account()
    if account.id != request.match_info["account_id"]:
        raise unauthorized("this is not the signer's account")
    if not verified.is_post_as_get:
        payload = verified.payload()
        if "contact" in payload:
            account.contact = parse_contact(payload["contact"])
        if payload.get("termsOfServiceAgreed") is True:
            account.tos_agreed = True
        status = payload.get("status")
        if status is not None:
            if status != "deactivated":
                raise ACMEProblem(ProblemType.MALFORMED, 'a client may only set "deactivated"')
            account.status = AccountStatus.DEACTIVATED
        await save(acme.store, account)
    return acme_json(account_json(acme, account), location=acme.urls.account(account.id))


async def list_orders(request: web.Request) -> web.Response:
    """RFC 8555 §7.1.2.1: the account's orders (POST-as-GET)."""
    acme = ACME.of(request)
    verified = await verify_post(request, acme)
    account = verified.require_account()
    if account.id != request.match_info["account_id"]:
        raise unauthorized("this is not the signer's account")
    docs = await acme.store.find_docs(ORDER, lookup=account.id)
    orders = [Order.from_doc(d) for d in docs]
    return acme_json({"orders": [acme.urls.order(o.id) for o in orders]})


async def key_change(request: web.Request) -> web.Response:
    """RFC 8555 §7.3.5: the outer JWS is signed by the account's key, the inner (its payload)
    by the new key, and says which account and old key it replaces."""
    acme = ACME.of(request)
    verified = await verify_post(request, acme)
    account = verified.require_account()
    new_key = _check_inner_jws(acme, verified, account)
    try:
        await acme.store.put_doc(Document(ACCOUNT_KEY, new_key.thumbprint, {"account": account.id}))
    except Conflict:
        owner = await account_for_key(acme, new_key.thumbprint)
        # RFC 8555 §7.3.5: "If ... the new key is already in use by another account ...
        # the server MUST ... respond with an error status code of 409 (Conflict)".
        raise ACMEProblem(
            ProblemType.MALFORMED,
            "the new key is already in use by an account",
            409,
            headers={"Location": acme.urls.account(owner.id)} if owner else {},
        ) from None
    old_thumbprint = account.thumbprint
    # Remembered before the old key is released, so that finalize refuses it at every moment
    # (RFC 8555 §11.1: no CSR for "any known account key pair"). Rolled over from before, by
    # this account or one that took the key up since, it is remembered already.
    with contextlib.suppress(Conflict):
        await acme.store.put_doc(Document(OLD_ACCOUNT_KEY, old_thumbprint, {"account": account.id}))
    account.jwk, account.thumbprint = new_key.jwk, new_key.thumbprint
    await save(acme.store, account)
    with contextlib.suppress(NotFound):  # a concurrent rollover removed it already
        await acme.store.take_doc(ACCOUNT_KEY, old_thumbprint)
    return acme_json(account_json(acme, account), location=acme.urls.account(account.id))


def _check_inner_jws(acme: ACME, verified: Verified, account: Account) -> AccountKey:
    if verified.is_post_as_get:
        raise ACMEProblem(ProblemType.MALFORMED, "keyChange needs the inner JWS as payload")
    inner = parse_jws(verified.jws.payload)
    header = inner.protected
    # RFC 8555 §7.3.5: "The inner JWS MUST have a "jwk" header parameter", "MUST have the
    # same "url" header parameter as the outer JWS", and "MUST omit the "nonce"".
    if "jwk" not in header or "kid" in header:
        raise ACMEProblem(ProblemType.MALFORMED, 'the inner JWS must carry the new key as "jwk"')
    if header.get("url") != verified.jws.protected.get("url"):
        raise ACMEProblem(ProblemType.MALFORMED, "the inner JWS url differs from the outer one")
    if "nonce" in header:
        raise ACMEProblem(ProblemType.MALFORMED, 'the inner JWS MUST omit "nonce"')
    new_key = parse_jwk(header["jwk"])
    verify_signature(inner, new_key)
    payload = inner.payload_json()
    if payload.get("account") != acme.urls.account(account.id):
        raise ACMEProblem(ProblemType.MALFORMED, "the inner payload names another account")
    try:
        old_key = parse_jwk(payload.get("oldKey"))
    except ACMEProblem:
        raise ACMEProblem(ProblemType.MALFORMED, '"oldKey" is not a valid JWK') from None
    if old_key.thumbprint != account.thumbprint:
        raise ACMEProblem(ProblemType.MALFORMED, '"oldKey" is not the account\'s current key')
    if new_key.thumbprint == account.thumbprint:
        raise ACMEProblem(ProblemType.MALFORMED, "the new key is the account's current key")
    return new_key
