"""Orders (RFC 8555 §7.4): newOrder, the order resource, finalize, certificate download.

An order's status follows its authorizations (pending -> ready when all are valid, invalid
when one fails or expires) and its request in the engine (processing -> valid or invalid).
It is brought up to date whenever it is read, with a conditional write.

Finalize is the five beats: parse and verify the CSR (before the order changes; its key
must not be an account's, RFC 8555 §11.1) -> authenticate (the JWS, the order's owner) ->
build the ``EnrollmentRequest`` (requester: the account; vouched: the order's identifiers,
all validated) -> ``engine.submit`` -> render the outcome as the order: ``valid`` with its
certificate URL, ``processing`` with Retry-After while an administrator decides, or
``invalid`` with a problem.
"""

from __future__ import annotations

import ssl
from datetime import timedelta
from typing import Any, assert_never

from aiohttp import web

from protocols.acme import ari
from protocols.acme.authz import load_authz, new_authorization
from protocols.acme.context import ACME
from protocols.acme.csr import csr_identifiers, refuse_account_key
from protocols.acme.identifiers import order_profile, parse_identifiers, shown_identifier
from protocols.acme.jws import b64decode
from protocols.acme.problems import (
    ACMEProblem,
    ProblemType,
    StoredProblem,
    Subproblem,
    unauthorized,
)
from protocols.acme.ratelimits import check_and_count
from protocols.acme.records import (
    AUTHZ,
    ORDER,
    Account,
    Authorization,
    AuthzStatus,
    Order,
    OrderStatus,
    from_ts,
    identifier_json,
    rfc3339,
    save,
)
from protocols.acme.render import acme_json
from protocols.acme.requests import verify_post
from server import csprng
from server.ca.csr import ParsedCSR
from server.errors import CertforgeError, Conflict, NotFound
from server.model import (
    AuthMethod,
    Denied,
    EnrollmentRequest,
    Identifier,
    Issued,
    Outcome,
    Pending,
    Requester,
    RequestQuery,
    Status,
    Vouched,
)

RETRY_AFTER = 3  # seconds, while an order is processing
FINALIZE_STALLED = timedelta(minutes=5)  # no request recorded this long after finalize
WRITE_ATTEMPTS = 5


def requester(acme: ACME, account: Account) -> Requester:
    return Requester(AuthMethod.ACME_ACCOUNT, acme.urls.account(account.id))


def order_json(acme: ACME, order: Order) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": str(order.status),
        "expires": rfc3339(order.expires),
        "identifiers": [identifier_json(i) for i in order.identifiers],
        "authorizations": [acme.urls.authz(a) for a in order.authorizations],
        "finalize": acme.urls.finalize(order.id),
    }
    if order.profile:
        body["profile"] = order.profile
    if order.replaces:
        body["replaces"] = order.replaces
    if order.error:
        body["error"] = order.error
    if order.status is OrderStatus.VALID:
        body["certificate"] = acme.urls.certificate(order.id)
    return body


def render_order(acme: ACME, order: Order, *, status: int = 200) -> web.Response:
    retry = RETRY_AFTER if order.status is OrderStatus.PROCESSING else None
    return acme_json(
        order_json(acme, order),
        status=status,
        location=acme.urls.order(order.id),
        retry_after=retry,
    )


async def new_order(request: web.Request) -> web.Response:
    acme = ACME.of(request)
    verified = await verify_post(request, acme)
    account = verified.require_account()
    payload = verified.payload()
    # The ACME profiles draft: "profile" names one of the directory's meta.profiles.
    profile = order_profile(acme.config, payload.get("profile"))
    identifiers = parse_identifiers(payload.get("identifiers"), profile)
    if "notBefore" in payload or "notAfter" in payload:
        # RFC 8555 §7.4: the server MAY refuse; validity comes from the profile.
        raise ACMEProblem(ProblemType.MALFORMED, "notBefore and notAfter are not supported")
    replaces = await ari.check_replaces(acme, account, payload.get("replaces"), identifiers)
    await _rate_limit(acme, account, identifiers)
    now = acme.clock.now()
    order = Order(
        id=csprng.token_urlsafe(12),
        account=account.id,
        identifiers=[Identifier(i.type, shown_identifier(i, w)["value"]) for i, w in identifiers],
        authorizations=[],
        expires=now + timedelta(hours=acme.settings.order_lifetime_hours),
        profile=profile.name,
        replaces=replaces,
    )
    for identifier, wildcard in identifiers:
        authz = await _reusable(acme, account, identifier, wildcard)
        if authz is None:
            authz = new_authorization(
                account.id, identifier, wildcard=wildcard, expires=order.expires
            )
            await acme.store.put_doc(authz.to_doc())
        order.authorizations.append(authz.id)
    await refresh(acme, order, write=False)
    await acme.store.put_doc(order.to_doc())
    return render_order(acme, order, status=201)


async def _rate_limit(
    acme: ACME, account: Account, identifiers: list[tuple[Identifier, bool]]
) -> None:
    s = acme.settings
    await check_and_count(
        acme, [f"account:{account.id}"], s.orders_per_account_per_hour, "new orders"
    )
    scopes = [f"identifier:{i}" for i, _ in identifiers]
    await check_and_count(acme, scopes, s.orders_per_identifier_per_hour, "new orders")


async def _reusable(
    acme: ACME, account: Account, identifier: Identifier, wildcard: bool
) -> Authorization | None:
    """A still-valid authorization of this account for this identifier, if reuse is on."""
    if not acme.settings.authz_reuse:
        return None
    key = f"{account.id}|{identifier}|{int(wildcard)}"
    now = acme.clock.now()
    for doc in await acme.store.find_docs(AUTHZ, lookup=key):
        authz = Authorization.from_doc(doc)
        if authz.current_status(now) is AuthzStatus.VALID:
            return authz
    return None


async def load_order(acme: ACME, order_id: str, account: Account) -> Order:
    try:
        order = Order.from_doc(await acme.store.get_doc(ORDER, order_id))
    except NotFound:
        raise ACMEProblem(ProblemType.MALFORMED, "no such order", 404) from None
    if order.account != account.id:
        raise unauthorized("this order is another account's")
    return order


async def refresh(acme: ACME, order: Order, *, write: bool = True) -> None:
    """Bring the order's status up to date with its authorizations, expiry and request."""
    before = (order.status, order.request_id)
    now = acme.clock.now()
    if order.status in (OrderStatus.PENDING, OrderStatus.READY) and now >= order.expires:
        order.status = OrderStatus.INVALID
        order.error = StoredProblem(ProblemType.MALFORMED, "the order expired").to_json()
    elif order.status is OrderStatus.PENDING:
        await _from_authorizations(acme, order)
    elif order.status is OrderStatus.PROCESSING:
        await _from_request(acme, order)
    if write and (order.status, order.request_id) != before:
        try:
            await save(acme.store, order)
        except Conflict:
            fresh = Order.from_doc(await acme.store.get_doc(ORDER, order.id))
            order.__dict__.update(fresh.__dict__)


async def _from_request(acme: ACME, order: Order) -> None:
    """A processing order follows its request in the engine. A server that stopped between
    submitting the request and recording its id left the order without one: the request is
    found by its transaction id (the order's), or, if none was recorded long after, the
    order is invalid and the client places a new one."""
    if order.request_id is None:
        found = await acme.store.find_requests(
            RequestQuery(
                transaction_id=order.id,
                requester=f"acme_account:{acme.urls.account(order.account)}",
                limit=1,
            )
        )
        if not found:
            since = from_ts(order.processing_since)
            if since is not None and acme.clock.now() - since > FINALIZE_STALLED:
                order.status = OrderStatus.INVALID
                order.error = StoredProblem(
                    ProblemType.SERVER_INTERNAL, "finalization was interrupted; order again"
                ).to_json()
            return
        order.request_id = found[0].id
    _, outcome = await acme.engine.retrieve(order.request_id)
    record_outcome(order, outcome)


async def _from_authorizations(acme: ACME, order: Order) -> None:
    now = acme.clock.now()
    authzs = [await load_authz(acme, a) for a in order.authorizations]
    failed = [
        a for a in authzs if a.current_status(now) not in (AuthzStatus.PENDING, AuthzStatus.VALID)
    ]
    if failed:
        order.status = OrderStatus.INVALID
        subproblems = [_subproblem(a, now) for a in failed]
        order.error = StoredProblem(
            ProblemType.COMPOUND if len(failed) > 1 else subproblems[0].type,
            "an authorization of this order failed",
            subproblems,
        ).to_json()
    elif all(a.current_status(now) is AuthzStatus.VALID for a in authzs):
        order.status = OrderStatus.READY


def _subproblem(authz: Authorization, now: Any) -> Subproblem:
    errors = [c.error for c in authz.challenges if c.error]
    detail = errors[0].get("detail", "") if errors else f"authorization {authz.current_status(now)}"
    type_ = ProblemType.UNAUTHORIZED
    if errors:
        type_ = ProblemType(errors[0]["type"].rpartition(":")[2])
    return Subproblem(type_, detail, shown_identifier(authz.identifier, authz.wildcard))


def record_outcome(order: Order, outcome: Outcome) -> None:
    match outcome:
        case Issued(certificate=cert):
            order.status, order.serial = OrderStatus.VALID, format(cert.serial, "x")
        case Pending():
            order.status = OrderStatus.PROCESSING
        case Denied(reason=reason):
            order.status = OrderStatus.INVALID
            order.error = StoredProblem(ProblemType.UNAUTHORIZED, reason).to_json()
        case _:
            assert_never(outcome)


async def get_order(request: web.Request) -> web.Response:
    acme = ACME.of(request)
    verified = await verify_post(request, acme)
    order = await load_order(acme, request.match_info["order_id"], verified.require_account())
    await refresh(acme, order)
    return render_order(acme, order)


async def finalize(request: web.Request) -> web.Response:
    acme = ACME.of(request)
    verified = await verify_post(request, acme)
    account = verified.require_account()
    order = await load_order(acme, request.match_info["order_id"], account)
    await refresh(acme, order)
    if order.status is not OrderStatus.READY:
        # RFC 8555 §7.4: finalizing an order not ready "MUST" fail with orderNotReady.
        raise ACMEProblem(
            ProblemType.ORDER_NOT_READY, f"the order is {order.status}, not ready", 403
        )
    csr = await _checked_csr(acme, order, verified.payload().get("csr"))
    order.status = OrderStatus.PROCESSING
    order.processing_since = acme.clock.now().isoformat()
    try:
        await save(acme.store, order)
    except Conflict:
        raise ACMEProblem(
            ProblemType.ORDER_NOT_READY, "the order is being finalized already", 403
        ) from None
    outcome = await _submit(acme, order, account, csr)
    order = await _settle(acme, order, outcome)
    if order.status is OrderStatus.VALID:
        await ari.record_replaced(acme, order)
    return render_order(acme, order)


async def _checked_csr(acme: ACME, order: Order, field: object) -> ParsedCSR:
    """The finalize CSR, refused before the order changes if it is bad: nothing is recorded
    and the order stays ready for a better one."""
    csr_der = b64decode(field, '"csr"')
    # RFC 8555 §7.4: "The CSR MUST indicate the exact same set of requested identifiers as
    # the initial newOrder request."
    if csr_identifiers(csr_der) != set(order.identifiers):
        raise ACMEProblem(
            ProblemType.BAD_CSR, "the CSR's names are not exactly the order's identifiers"
        )
    csr = acme.engine.verify_csr(csr_der)  # its signature and key, as submit would check
    await refuse_account_key(acme.store, csr)
    return csr


async def _settle(acme: ACME, order: Order, outcome: Outcome) -> Order:
    """Record the engine's outcome on the order; a client polling meanwhile may have
    recorded it first (``refresh``), which is as good."""
    for _ in range(WRITE_ATTEMPTS):
        record_outcome(order, outcome)
        order.request_id = outcome.request_id
        try:
            await save(acme.store, order)
            return order
        except Conflict:
            order = Order.from_doc(await acme.store.get_doc(ORDER, order.id))
            if order.status is not OrderStatus.PROCESSING:
                return order
    raise Conflict("the order changed too often while being finalized")


async def _submit(acme: ACME, order: Order, account: Account, csr: ParsedCSR) -> Outcome:
    req = EnrollmentRequest(
        csr_der=csr.der,
        protocol="acme",
        requester=requester(acme, account),
        profile=order.profile or None,
        vouched=Vouched(identifiers=frozenset(order.identifiers)),
        transaction_id=order.id,
    )
    try:
        return await acme.engine.submit(req, verified=csr)
    except CertforgeError:
        # Bad input the engine refused (nothing recorded there): the order is ready again.
        order.status = OrderStatus.READY
        await save(acme.store, order)
        raise


async def certificate(request: web.Request) -> web.Response:
    """RFC 8555 §7.4.2: POST-as-GET, "application/pem-certificate-chain", leaf first."""
    acme = ACME.of(request)
    verified = await verify_post(request, acme)
    order = await load_order(acme, request.match_info["order_id"], verified.require_account())
    if order.status is not OrderStatus.VALID or order.request_id is None:
        raise ACMEProblem(ProblemType.MALFORMED, "the order has no certificate yet", 404)
    record, outcome = await acme.engine.retrieve(order.request_id)
    if record.status is not Status.ISSUED or not isinstance(outcome, Issued):
        raise ACMEProblem(ProblemType.MALFORMED, "the order has no certificate", 404)
    pems = [ssl.DER_cert_to_PEM_cert(d) for d in (outcome.certificate.der, *outcome.chain)]
    return web.Response(
        text="".join(pems),
        content_type="application/pem-certificate-chain",
        headers={"Link": f'<{acme.urls.order(order.id)}>;rel="up"'},
    )
