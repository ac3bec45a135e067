"""The OCSP responder's HTTP front end (RFC 6960 Appendix A, RFC 5019), at ``/ocsp`` on the
HTTP listener, unless ``[ocsp] enabled = false``."""

from __future__ import annotations

from aiohttp import web

from protocols.ocsp.errors import ocsp_error_middleware
from protocols.ocsp.handlers import add_routes
from server.config import Config
from server.frontend import FrontEnd, Mount, Mounted
from server.keys import FRONTEND


def mount(config: Config) -> Mounted:
    if not config.ocsp.enabled:
        return Mounted(())
    app = web.Application(middlewares=[ocsp_error_middleware])
    app[FRONTEND] = "ocsp"
    add_routes(app)
    return Mounted((Mount("http", "/ocsp", app),))


frontend = FrontEnd(name="ocsp", mount=mount)
