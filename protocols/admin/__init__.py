"""The admin API, mounted at ``/api/v1/admin/`` on the HTTPS listener."""

from __future__ import annotations

from aiohttp import web

from protocols.admin import tokens
from protocols.admin.handlers import add_routes
from protocols.rest.problems import problem_middleware
from server.config import Config
from server.frontend import FrontEnd, Mount, Mounted
from server.keys import FRONTEND


def mount(config: Config) -> Mounted:
    app = web.Application(
        middlewares=[problem_middleware], client_max_size=config.server.max_body_bytes
    )
    app[FRONTEND] = "admin"
    add_routes(app)
    tokens.add_routes(app)
    return Mounted((Mount("https", "/api/v1/admin/", app),))


frontend = FrontEnd(name="admin", mount=mount)
