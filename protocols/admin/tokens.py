"""The admin API's bearer tokens, at ``/api/v1/admin/tokens`` (``server/tokens.py``).

- ``GET /tokens``: every token, revoked and expired ones included, never a secret.
- ``POST /tokens`` ``{"name": ..., "roles": [...], "expires_in": "30d"}`` (``roles`` defaults
  to ``["requester"]``, ``expires_in`` to never): 201 with the token, shown this once.
- ``POST /tokens/{id or name}/revoke``: 200 with the revoked token; 404 if there is none,
  409 if it is revoked already or several active tokens have that name. Revoking the token
  the request carries is allowed: the request was authenticated before.
- ``POST /tokens/bootstrap/rotate``: a new ``admin.token`` in the server's data directory
  (mode 0600), the token it held revoked; the new secret goes to the file only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from protocols.admin.handlers import _json_body
from protocols.rest.auth import require
from server.errors import Malformed
from server.keys import CONFIG, ENGINE, TOKENS
from server.model import Role
from server.roles import Permission
from server.tokens import TokenInfo, parse_duration

ROLES = ", ".join(Role)


def token_json(info: TokenInfo, now: datetime) -> dict[str, Any]:
    def at(t: datetime | None) -> str | None:
        return t.isoformat() if t else None

    return {
        "id": info.id,
        "name": info.name,
        "roles": sorted(str(r) for r in info.roles),
        "state": info.state(now),
        "created_at": at(info.created_at),
        "last_used_at": at(info.last_used_at),
        "expires_at": at(info.expires_at),
        "revoked_at": at(info.revoked_at),
    }


def _roles(value: object) -> frozenset[Role]:
    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise Malformed(f"roles must be a list of role names ({ROLES})")
    try:
        return frozenset(Role(r) for r in value)
    except ValueError:
        raise Malformed(f"roles must be among {ROLES}") from None


def _now(request: web.Request) -> datetime:
    return request.config_dict[ENGINE].clock.now()


async def list_tokens(request: web.Request) -> web.Response:
    await require(request, Permission.READ_TOKENS)
    tokens = await request.config_dict[TOKENS].list_tokens()
    now = _now(request)
    return web.json_response({"tokens": [token_json(t, now) for t in tokens]})


async def create_token(request: web.Request) -> web.Response:
    await require(request, Permission.MANAGE_TOKENS)
    body = await _json_body(request)
    name, expires_in = body.get("name"), body.get("expires_in")
    if not isinstance(name, str):
        raise Malformed('send {"name": "...", "roles": [...], "expires_in": "30d"}')
    roles = _roles(body.get("roles", ["requester"]))
    if expires_in is not None and not isinstance(expires_in, str):
        raise Malformed("expires_in must be a duration such as 90m, 12h or 30d")
    lifetime = parse_duration(expires_in) if expires_in is not None else None
    info, token = await request.config_dict[TOKENS].create(name, roles, lifetime=lifetime)
    return web.json_response(token_json(info, _now(request)) | {"token": token}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    await require(request, Permission.MANAGE_TOKENS)
    info = await request.config_dict[TOKENS].revoke(request.match_info["ref"])
    return web.json_response(token_json(info, _now(request)))


async def rotate_bootstrap(request: web.Request) -> web.Response:
    await require(request, Permission.MANAGE_TOKENS)
    data_dir = request.config_dict[CONFIG].server.data_dir
    new, old = await request.config_dict[TOKENS].rotate_bootstrap(data_dir)
    now = _now(request)
    return web.json_response(
        {
            "token": token_json(new, now),
            "revoked": token_json(old, now) if old else None,
            "path": str(data_dir / "admin.token"),
        }
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/tokens", list_tokens)
    r.add_post("/tokens", create_token)
    r.add_post("/tokens/bootstrap/rotate", rotate_bootstrap)
    r.add_post("/tokens/{ref}/revoke", revoke_token)
