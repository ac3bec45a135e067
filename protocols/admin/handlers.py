"""The admin API (the classic ICertAdmin), at ``/api/v1/admin/`` on the HTTPS listener.

Bearer tokens with roles; each handler first asks for one permission (``server/roles.py``).
Search requests and certificates, approve, deny, revoke with a reason, read the event log.
Tokens are in ``protocols.admin.tokens``, the lists in ``protocols.admin.inventory``; each
front end mounts its own admin routes under ``/api/v1/admin/<name>/`` (SCEP challenges, EST
users, ACME EAB credentials and renewal marks, CMP secrets).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from protocols.admin.inventory import (
    list_certificates,
    list_requests,
    page_limit,
    parse_time,
)
from protocols.admin.render import certificate_json, crl_json, event_json, request_json
from protocols.rest.auth import require
from server.errors import Malformed
from server.keys import CRLS, ENGINE, STORE
from server.model import RevocationReason
from server.roles import Permission
from server.web.body import read_body
from server.web.jsonreader import read_json_object


def parse_serial(text: str) -> int:
    """SERIAL is hexadecimal, any case, with or without colons."""
    cleaned = text.replace(":", "").strip()
    try:
        return int(cleaned, 16)
    except ValueError:
        raise Malformed(f"{text!r} is not a hexadecimal serial number") from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    return read_json_object(await read_body(request))


def _time(value: object, name: str) -> datetime | None:
    """A time from a JSON body: ``parse_time``'s, or None for none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Malformed(f"{name} must be an ISO 8601 time with its offset (a string)")
    return parse_time(value, name)


async def get_request(request: web.Request) -> web.Response:
    await require(request, Permission.READ)
    store = request.config_dict[STORE]
    record = await store.get_request(request.match_info["request_id"])
    events = await store.list_events(request_id=record.id)
    return web.json_response(
        request_json(record, full=True) | {"events": [event_json(e) for e in events]}
    )


async def approve(request: web.Request) -> web.Response:
    by = await require(request, Permission.DECIDE)
    engine = request.config_dict[ENGINE]
    await engine.approve(request.match_info["request_id"], by=by)
    record, _ = await engine.retrieve(request.match_info["request_id"])
    return web.json_response(request_json(record))


async def deny(request: web.Request) -> web.Response:
    by = await require(request, Permission.DECIDE)
    body = await _json_body(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise Malformed("reason must be a string of at most 500 characters")
    engine = request.config_dict[ENGINE]
    await engine.deny(request.match_info["request_id"], by=by, reason=reason)
    record, _ = await engine.retrieve(request.match_info["request_id"])
    return web.json_response(request_json(record))


async def get_certificate(request: web.Request) -> web.Response:
    await require(request, Permission.READ)
    store = request.config_dict[STORE]
    serial = parse_serial(request.match_info["serial"])
    cert = await store.get_certificate(serial)
    events = await store.list_events(serial=serial)
    return web.json_response(
        certificate_json(cert, full=True) | {"events": [event_json(e) for e in events]}
    )


async def revoke(request: web.Request) -> web.Response:
    by = await require(request, Permission.REVOKE)
    body = await _json_body(request)
    reason = body.get("reason", "unspecified")
    if not isinstance(reason, str):
        raise Malformed("reason must be an RFC 5280 reason name")
    invalidity = body.get("invalidity_date")
    cert = await request.config_dict[ENGINE].revoke(
        parse_serial(request.match_info["serial"]),
        reason=RevocationReason.parse(reason),
        by=by,
        invalidity_date=_time(invalidity, "invalidity_date") if invalidity else None,
    )
    return web.json_response(certificate_json(cert))


async def unrevoke(request: web.Request) -> web.Response:
    by = await require(request, Permission.REVOKE)
    cert = await request.config_dict[ENGINE].unrevoke(
        parse_serial(request.match_info["serial"]), by=by
    )
    return web.json_response(certificate_json(cert))


async def list_events(request: web.Request) -> web.Response:
    await require(request, Permission.READ)
    q = request.query
    limit = page_limit(request.query)
    serial = parse_serial(q["serial"]) if "serial" in q else None
    events = await request.config_dict[STORE].list_events(
        request_id=q.get("request_id"), serial=serial, limit=limit
    )
    return web.json_response({"events": [event_json(e) for e in events]})


async def publish_crls(request: web.Request) -> web.Response:
    """Issue fresh CRLs now: every CA's, or one CA's with ``{"issuer": NAME}``; delta CRLs
    with ``{"delta": true}``."""
    await require(request, Permission.PUBLISH_CRL)
    body = await _json_body(request)
    issuer = body.get("issuer")
    if issuer is not None and not isinstance(issuer, str):
        raise Malformed("issuer must be the name of a CA")
    delta = body.get("delta", False)
    if not isinstance(delta, bool):
        raise Malformed("delta must be true or false")
    crls = request.config_dict[CRLS]
    if delta:
        published = [await crls.publish_delta(issuer)] if issuer else await crls.publish_deltas()
    else:
        published = await crls.publish_ca(issuer) if issuer else await crls.publish_all()
    return web.json_response({"crls": [crl_json(c) for c in published]})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/requests", list_requests)
    r.add_get("/requests/{request_id}", get_request)
    r.add_post("/requests/{request_id}/approve", approve)
    r.add_post("/requests/{request_id}/deny", deny)
    r.add_get("/certificates", list_certificates)
    r.add_get("/certificates/{serial}", get_certificate)
    r.add_post("/certificates/{serial}/revoke", revoke)
    r.add_post("/certificates/{serial}/unrevoke", unrevoke)
    r.add_get("/events", list_events)
    r.add_post("/crl/publish", publish_crls)
