"""The native REST front end, mounted at ``/api/v1/`` on the HTTPS listener."""

from __future__ import annotations

from aiohttp import web

from protocols.rest.config import SECTION
from protocols.rest.handlers import add_routes
from protocols.rest.problems import problem_middleware
from server.config import Config, ProtocolAuth
from server.frontend import FrontEnd, Mount, Mounted
from server.keys import FRONTEND


def mount(config: Config) -> Mounted:
    app = web.Application(
        middlewares=[problem_middleware], client_max_size=config.server.max_body_bytes
    )
    app[FRONTEND] = "rest"
    add_routes(app)
    return Mounted((Mount("https", "/api/v1/", app),))


frontend = FrontEnd(
    name="rest",
    mount=mount,
    section=SECTION,
    auth=ProtocolAuth("rest", default=("anonymous", "token")),
)
