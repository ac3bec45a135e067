"""EST's admin routes: its users (``certforge est user add NAME``), at ``/api/v1/admin/est/users``.

``POST {"name": ...}`` creates a user and answers its password, once (201); ``GET`` lists the
users (names and creation times, never hashes); ``DELETE /est/users/{name}`` removes one.
"""

from __future__ import annotations

from aiohttp import web

from protocols.admin.handlers import _json_body
from protocols.est.users import add_user, delete_user, list_users
from protocols.rest.auth import require
from protocols.rest.problems import problem_middleware
from server.errors import Conflict, Malformed
from server.keys import ENGINE, FRONTEND, STORE
from server.roles import Permission


async def create_user(request: web.Request) -> web.Response:
    await require(request, Permission.ENROLLMENT_SECRETS)
    name = (await _json_body(request)).get("name")
    if not isinstance(name, str):
        raise Malformed('send {"name": "..."}')
    store, clock = request.config_dict[STORE], request.config_dict[ENGINE].clock
    try:
        password = await add_user(store, clock, name)
    except Conflict:
        raise Conflict(f"an EST user named {name!r} exists already") from None
    return web.json_response({"name": name, "password": password}, status=201)


async def get_users(request: web.Request) -> web.Response:
    await require(request, Permission.READ)
    return web.json_response({"users": await list_users(request.config_dict[STORE])})


async def remove_user(request: web.Request) -> web.Response:
    await require(request, Permission.ENROLLMENT_SECRETS)
    await delete_user(request.config_dict[STORE], request.match_info["name"])
    return web.Response(status=204)


def admin_app(max_body_bytes: int) -> web.Application:
    """A sub-app at ``/api/v1/admin/est/``."""
    app = web.Application(middlewares=[problem_middleware], client_max_size=max_body_bytes)
    app[FRONTEND] = "admin"
    app.router.add_post("/users", create_user)
    app.router.add_get("/users", get_users)
    app.router.add_delete("/users/{name}", remove_user)
    return app
