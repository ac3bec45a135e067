"""The EST sub-applications: the protocol at ``/.well-known/est/``, its admin routes at
``/api/v1/admin/est/``, and the start hook that gives them the engine."""

from __future__ import annotations

from aiohttp import web

from protocols.est.admin import admin_app
from protocols.est.config import SECTION
from protocols.est.context import EST, ESTContext
from protocols.est.errors import est_errors
from protocols.est.handlers import add_routes
from server.clientauth import load_trust_anchors
from server.config import Config
from server.frontend import FrontEndContext, Mount, Mounted
from server.keys import FRONTEND


def mount(config: Config) -> Mounted:
    app = web.Application(middlewares=[est_errors], client_max_size=config.server.max_body_bytes)
    app[FRONTEND] = "est"
    settings = SECTION.of(config)
    anchors = load_trust_anchors(settings.trust_anchors, config.server.data_dir)
    est = ESTContext(
        anchors=anchors, retry_after=settings.retry_after, data_dir=config.server.data_dir
    )
    app[EST] = est
    add_routes(app)

    async def start(ctx: FrontEndContext) -> None:
        # A revocation on this server forgets the client certificates' verdicts at once.
        ctx.engine.on_status_change(est.forget_certificates)

    return Mounted(
        (
            Mount("https", "/.well-known/est/", app),
            Mount("https", "/api/v1/admin/est/", admin_app(config.server.max_body_bytes)),
        ),
        start=start,
        client_anchors=tuple(anchors),
    )
