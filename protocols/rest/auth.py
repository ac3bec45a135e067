"""Bearer-token authentication for the REST and admin APIs."""

from __future__ import annotations

from aiohttp import web

from server.errors import Forbidden, Unauthorized
from server.keys import TOKENS
from server.model import ANONYMOUS, Requester
from server.roles import Permission, permits, roles_permitting


async def requester_of(request: web.Request, *, required: bool) -> Requester:
    """Who is asking: the token's holder, or anonymous when no token is sent and none is
    required. A token that is sent must be valid, whether or not one is required."""
    header = request.headers.get("Authorization", "")
    if not header:
        if required:
            raise Unauthorized("this endpoint needs a bearer token (Authorization: Bearer ...)")
        return ANONYMOUS
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return await request.config_dict[TOKENS].authenticate(token.strip())


async def require(request: web.Request, permission: Permission) -> Requester:
    """The requester, whose roles must permit ``permission`` (``server/roles.py``). Called
    first in every admin handler, so a refusal leaves everything as it was."""
    requester = await requester_of(request, required=True)
    if permits(requester.roles, permission):
        return requester
    needed = " or ".join(roles_permitting(permission))
    held = ", ".join(sorted(requester.roles)) or "none"
    raise Forbidden(f"this needs the role {needed} (the token's roles: {held})")
