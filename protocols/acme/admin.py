"""ACME's part of the admin API, mounted at ``/api/v1/admin/acme/``.

``POST eab``: new External Account Binding credentials ``{"kid", "hmac_key"}``.
``POST renewal``: mark certificates for renewal now (RFC 9773), with one of
``{"serial": HEX}``, ``{"key_sha256": HEX}`` (every certificate of that key) or
``{"issuer": NAME}`` (every certificate of that issuing CA).
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from protocols.acme import ari, eab
from protocols.admin.handlers import _json_body as json_body
from protocols.rest.auth import require
from protocols.rest.problems import problem_middleware
from server.errors import Malformed, NotFound
from server.keys import CAS, FRONTEND, STORE
from server.model import SystemClock
from server.roles import Permission

_HEX = re.compile(r"[0-9a-f]+\Z")


async def create_eab(request: web.Request) -> web.Response:
    await require(request, Permission.ENROLLMENT_SECRETS)
    kid, key = await eab.create_credentials(request.config_dict[STORE], SystemClock())
    return web.json_response({"kid": kid, "hmac_key": key}, status=201)


def mark_id(request: web.Request, body: dict[str, Any]) -> str:
    given = [k for k in ("serial", "key_sha256", "issuer") if body.get(k)]
    if len(given) != 1 or not isinstance(body[given[0]], str):
        raise Malformed('send exactly one of "serial", "key_sha256" or "issuer"')
    value = body[given[0]].strip().lower().replace(":", "")
    match given[0]:
        case "serial":
            if not _HEX.match(value):
                raise Malformed(f"{body['serial']!r} is not a hexadecimal serial number")
            return f"serial:{int(value, 16):x}"
        case "key_sha256":
            if not _HEX.match(value) or len(value) != 64:
                raise Malformed("key_sha256 is the hex SHA-256 of the SubjectPublicKeyInfo")
            return f"key:{value}"
        case _:
            name = body["issuer"].strip()
            if name not in request.config_dict[CAS].issuers:
                raise NotFound(f"no issuing CA named {name!r}")
            return f"issuer:{name}"


async def mark_renewal(request: web.Request) -> web.Response:
    await require(request, Permission.RENEWAL)
    scope = mark_id(request, await json_body(request))
    at = await ari.mark(request.config_dict[STORE], SystemClock(), scope)
    return web.json_response({"marked": scope, "at": at.isoformat()}, status=201)


def admin_app(max_body: int) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=max_body)
    app[FRONTEND] = "admin"
    app.router.add_post("/eab", create_eab)
    app.router.add_post("/renewal", mark_renewal)
    return app
