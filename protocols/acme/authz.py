"""Authorizations and challenges (RFC 8555 §7.1.4, §7.5): reading them, deactivating an
authorization (§7.5.2), and responding to a challenge (§7.5.1), which starts its validation
in the background and waits up to ``QUICK_VALIDATION_SECONDS`` for it: a validation done by
then is in the answer (the challenge ``valid`` or ``invalid``), and the client need not poll.
A slower one goes on in the background; the answer then says ``processing``.

A challenge moves pending -> processing (a conditional write: of two concurrent responses
one starts the validation) -> valid or invalid, and its authorization with it. A validation
that a stopped server left processing is started again by the next request that reads its
authorization or challenge after twice the validation timeout.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from protocols.acme.context import ACME
from protocols.acme.problems import ACMEProblem, ProblemType, StoredProblem, unauthorized
from protocols.acme.records import (
    AUTHZ,
    Account,
    Authorization,
    AuthzStatus,
    Challenge,
    ChallengeStatus,
    ChallengeType,
    from_ts,
    identifier_json,
    rfc3339,
    save,
)
from protocols.acme.render import acme_json
from protocols.acme.requests import Verified, verify_post
from protocols.acme.validation import ValidationFailed, Validator, key_authorization
from server import csprng
from server.errors import Conflict, NotFound
from server.model import Identifier, IdentifierType

log = logging.getLogger("certforge.acme")
WRITE_ATTEMPTS = 5
# How long the response to a challenge waits for its validation. Long enough for a responder
# on a nearby network, short enough that a client never waits long on a slow one.
QUICK_VALIDATION_SECONDS = 1.0


def challenge_types(identifier: Identifier, wildcard: bool) -> list[ChallengeType]:
    """RFC 8555 §7.1.3: wildcards only by dns-01; RFC 8738 §7: IP addresses by http-01 and
    tls-alpn-01, never dns-01."""
    if wildcard:
        return [ChallengeType.DNS_01]
    if identifier.type is IdentifierType.IP:
        return [ChallengeType.HTTP_01, ChallengeType.TLS_ALPN_01]
    return [ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.TLS_ALPN_01]


def new_authorization(
    account: str, identifier: Identifier, *, wildcard: bool, expires: datetime
) -> Authorization:
    return Authorization(
        id=csprng.token_urlsafe(12),
        account=account,
        identifier=identifier,
        expires=expires,
        wildcard=wildcard,
        # RFC 8555 §8.1: a token "MUST have at least 128 bits of entropy".
        challenges=[
            Challenge(t, csprng.token_urlsafe(32)) for t in challenge_types(identifier, wildcard)
        ],
    )


async def load_authz(acme: ACME, authz_id: str) -> Authorization:
    try:
        return Authorization.from_doc(await acme.store.get_doc(AUTHZ, authz_id))
    except NotFound:
        raise ACMEProblem(ProblemType.MALFORMED, "no such authorization", 404) from None


def challenge_json(acme: ACME, authz: Authorization, challenge: Challenge) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": str(challenge.type),
        "url": acme.urls.challenge(authz.id, challenge.type),
        "status": str(challenge.status),
        "token": challenge.token,
    }
    if challenge.validated:
        body["validated"] = challenge.validated
    if challenge.error:
        body["error"] = challenge.error
    return body


def authz_json(acme: ACME, authz: Authorization) -> dict[str, Any]:
    status = authz.current_status(acme.clock.now())
    challenges = authz.challenges
    if status is AuthzStatus.VALID:
        # RFC 8555 §7.1.4: for a valid authorization, the challenge that was validated.
        challenges = [c for c in challenges if c.status is ChallengeStatus.VALID]
    body: dict[str, Any] = {
        "identifier": identifier_json(authz.identifier),
        "status": str(status),
        "expires": rfc3339(authz.expires),
        "challenges": [challenge_json(acme, authz, c) for c in challenges],
    }
    if authz.wildcard:
        body["wildcard"] = True
    return body


async def _owned_authz(request: web.Request, acme: ACME) -> tuple[Verified, Account, Authorization]:
    """The authenticated request, its account, and the URL's authorization, which must be
    that account's."""
    verified = await verify_post(request, acme)
    account = verified.require_account()
    authz = await load_authz(acme, request.match_info["authz_id"])
    if authz.account != account.id:
        raise unauthorized("this authorization is another account's")
    return verified, account, authz


async def get_authz(request: web.Request) -> web.Response:
    """POST-as-GET, or {"status": "deactivated"} (RFC 8555 §7.5.2)."""
    acme = ACME.of(request)
    verified, account, authz = await _owned_authz(request, acme)
    stalled = next((c for c in authz.challenges if _is_stalled(acme, c)), None)
    if stalled is not None:  # its server stopped mid-validation: validate again here
        authz, _, _ = await _start(acme, authz, stalled, account)
    if not verified.is_post_as_get:
        if verified.payload().get("status") != "deactivated":
            raise ACMEProblem(ProblemType.MALFORMED, 'a client may only set "deactivated"')
        if authz.current_status(acme.clock.now()) not in (AuthzStatus.PENDING, AuthzStatus.VALID):
            raise ACMEProblem(ProblemType.MALFORMED, "only pending or valid authorizations")
        authz.status = AuthzStatus.DEACTIVATED
        await save(acme.store, authz)
    retry = 1 if any(c.status is ChallengeStatus.PROCESSING for c in authz.challenges) else None
    return acme_json(authz_json(acme, authz), location=acme.urls.authz(authz.id), retry_after=retry)


async def respond_challenge(request: web.Request) -> web.Response:
    """RFC 8555 §7.5.1: a POST of {} asks the server to validate; POST-as-GET reads."""
    acme = ACME.of(request)
    verified, account, authz = await _owned_authz(request, acme)
    challenge = authz.challenge(request.match_info["type"])
    if challenge is None:
        raise ACMEProblem(ProblemType.MALFORMED, "no such challenge", 404)
    if not verified.is_post_as_get:
        verified.payload()  # must be a JSON object, usually {}
        authz, challenge, validation = await _start(acme, authz, challenge, account)
        if validation is not None:
            # Not cancelled by a timeout here, nor if the client goes away: it runs on.
            await asyncio.wait({validation}, timeout=QUICK_VALIDATION_SECONDS)
            if validation.done() and not validation.cancelled() and validation.exception() is None:
                authz = validation.result() or authz
                challenge = authz.challenge(challenge.type) or challenge
    # RFC 8555 §8.2: while processing, Retry-After tells the client when to look again (lego
    # waits 5 seconds without it).
    retry = 1 if challenge.status is ChallengeStatus.PROCESSING else None
    return acme_json(
        challenge_json(acme, authz, challenge), up=acme.urls.authz(authz.id), retry_after=retry
    )


async def _start(
    acme: ACME, authz: Authorization, challenge: Challenge, account: Account
) -> tuple[Authorization, Challenge, asyncio.Task[Authorization | None] | None]:
    """Start validating ``challenge`` unless its authorization has one under way or done;
    the validation's task, when this call started it."""
    now = acme.clock.now()
    if authz.current_status(now) is not AuthzStatus.PENDING:
        return authz, challenge, None  # RFC 8555 §7.5.1: nothing to do; answer its state
    stalled = _is_stalled(acme, challenge)
    if challenge.status is not ChallengeStatus.PENDING and not stalled:
        return authz, challenge, None
    if any(c.status is ChallengeStatus.PROCESSING for c in authz.challenges) and not stalled:
        return authz, challenge, None  # one validation per authorization at a time
    challenge.status, challenge.started = ChallengeStatus.PROCESSING, now.isoformat()
    try:
        await save(acme.store, authz)
    except Conflict:
        authz = await load_authz(acme, authz.id)  # another request started it
        return authz, authz.challenge(challenge.type) or challenge, None
    key_authz = key_authorization(challenge.token, account.thumbprint)
    task = acme.background.spawn(
        validate(acme, authz.id, authz.identifier, authz.wildcard, challenge, key_authz)
    )
    return authz, challenge, task


def _is_stalled(acme: ACME, challenge: Challenge) -> bool:
    """Processing for over twice the validation timeout: the validating server stopped."""
    if challenge.status is not ChallengeStatus.PROCESSING:
        return False
    started = from_ts(challenge.started) or acme.clock.now()
    limit = timedelta(seconds=2 * acme.settings.validation_timeout_seconds)
    return acme.clock.now() - started > limit


async def validate(
    acme: ACME,
    authz_id: str,
    identifier: Identifier,
    wildcard: bool,
    challenge: Challenge,
    key_authz: str,
) -> Authorization | None:
    """Run one validation under the timeout, then record its result: the authorization as
    recorded, or None if it was no longer waiting for this validation."""
    if acme.background.http_session is None:
        acme.background.http_session = Validator(acme.settings).new_session()
    validator = Validator(acme.settings, acme.background.http_session)
    type_, token = challenge.type, challenge.token
    checks = {
        ChallengeType.HTTP_01: validator.http01,
        ChallengeType.DNS_01: validator.dns01,
        ChallengeType.TLS_ALPN_01: validator.tls_alpn01,
    }
    error: StoredProblem | None = None
    try:
        async with asyncio.timeout(acme.settings.validation_timeout_seconds):
            await checks[type_](identifier, token, key_authz)
            await validator.check_caa(identifier, wildcard=wildcard)
    except ValidationFailed as failed:
        error = StoredProblem(failed.type, failed.detail)
    except TimeoutError:
        error = StoredProblem(ProblemType.CONNECTION, f"{type_} validation timed out")
    except Exception as exc:
        # A failure the validator did not turn into its own problem still ends the
        # challenge: otherwise it stayed processing, and was retried into the same failure.
        error = _unforeseen(authz_id, type_, exc)
    return await _record(acme, authz_id, type_, error)


def _unforeseen(authz_id: str, type_: ChallengeType, exc: Exception) -> StoredProblem:
    """I/O and what the remote side sent (OSError, aiohttp's errors, ValueError) are a
    connection problem, logged as a warning; anything else is a fault of ours, logged with
    its traceback, and the client sees serverInternal."""
    extra = {"authz": authz_id, "type": str(type_), "error": type(exc).__name__}
    if isinstance(exc, OSError | aiohttp.ClientError | ValueError):
        log.warning("validation failed: %s", type(exc).__name__, extra=extra)
        return StoredProblem(ProblemType.CONNECTION, f"{type_} validation could not connect")
    log.error("validation failed unexpectedly", exc_info=exc, extra=extra)
    return StoredProblem(ProblemType.SERVER_INTERNAL, f"{type_} validation failed")


async def _record(
    acme: ACME, authz_id: str, type_: ChallengeType, error: StoredProblem | None
) -> Authorization | None:
    for _ in range(WRITE_ATTEMPTS):
        authz = await load_authz(acme, authz_id)
        challenge = authz.challenge(type_)
        if challenge is None or challenge.status is not ChallengeStatus.PROCESSING:
            return None
        now = acme.clock.now()
        if error is None:
            challenge.status, challenge.validated = ChallengeStatus.VALID, rfc3339(now)
            authz.status = AuthzStatus.VALID
            authz.expires = now + timedelta(hours=acme.settings.authz_lifetime_hours)
        else:
            challenge.status, challenge.error = ChallengeStatus.INVALID, error.to_json()
            # RFC 8555 §7.1.6: a failed challenge makes its authorization invalid.
            authz.status = AuthzStatus.INVALID
        try:
            await save(acme.store, authz)
            log.info(
                "validation",
                extra={"authz": authz_id, "type": str(type_), "valid": error is None},
            )
            return authz
        except Conflict:
            continue  # the client deactivated it meanwhile, or another writer: re-read
    return None
