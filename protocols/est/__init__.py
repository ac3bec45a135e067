"""The EST front end (RFC 7030, RFC 8951), mounted at ``/.well-known/est/`` on HTTPS."""

from __future__ import annotations

from aiohttp import web

from protocols.est.context import EST, ESTContext
from protocols.est.errors import est_errors
from protocols.est.handlers import add_routes
from server.clientauth import load_trust_anchors
from server.config import Config
from server.frontend import Mount
from server.keys import FRONTEND


def frontend(config: Config) -> list[Mount]:
    app = web.Application(middlewares=[est_errors], client_max_size=config.server.max_body_bytes)
    app[FRONTEND] = "est"
    app[EST] = ESTContext(
        anchors=load_trust_anchors(config.est.trust_anchors, config.server.data_dir),
        retry_after=config.est.retry_after,
        data_dir=config.server.data_dir,
    )
    add_routes(app)
    return [Mount("https", "/.well-known/est/", app)]
