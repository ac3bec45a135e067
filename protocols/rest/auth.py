"""Bearer-token authentication for the REST and admin APIs."""

from __future__ import annotations

from aiohttp import web

from server.errors import Forbidden, Unauthorized
from server.keys import TOKENS
from server.model import ANONYMOUS, Requester, Role


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


async def require_role(request: web.Request, *roles: Role) -> Requester:
    """The requester, who must hold one of ``roles`` (administrators hold every role)."""
    requester = await requester_of(request, required=True)
    if Role.ADMINISTRATOR in requester.roles or requester.roles & set(roles):
        return requester
    raise Forbidden(f"this needs the role {' or '.join(roles)}")
