"""The CMP sub-applications: the protocol at ``/.well-known/cmp`` (HTTP listener), its admin
route at ``/api/v1/admin/cmp/``, and the start hook that builds their ``CMPDeps``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import web

from protocols.cmp.admin import SECRETS, admin_app
from protocols.cmp.config import SECTION
from protocols.cmp.deps import CMPDeps
from protocols.cmp.handlers import OPERATIONS, OperationsSlot, add_routes
from protocols.cmp.messages import MAX_MESSAGE_BYTES
from protocols.cmp.operations import Operations
from protocols.cmp.secrets import OneTimeSecrets
from protocols.cmp.signer import cmp_dir, load_or_issue, master_key, watch_source
from server.clientauth import load_trust_anchors
from server.config import Config
from server.frontend import FrontEndContext, Mount, Mounted
from server.keys import FRONTEND


def _app(max_body_bytes: int) -> tuple[web.Application, OperationsSlot]:
    app = web.Application(client_max_size=min(MAX_MESSAGE_BYTES, max_body_bytes))
    app[FRONTEND] = "cmp"
    slot = OperationsSlot()
    app[OPERATIONS] = slot
    add_routes(app)
    return app, slot


def started_app(deps: CMPDeps) -> web.Application:
    app, slot = _app(MAX_MESSAGE_BYTES)
    slot.value = Operations(deps)
    return app


def mount(config: Config) -> Mounted:
    app, slot = _app(config.server.max_body_bytes)
    admin = admin_app(config.server.max_body_bytes)
    settings = SECTION.of(config)
    anchors = tuple(load_trust_anchors(settings.trust_anchors, config.server.data_dir))

    async def start(ctx: FrontEndContext) -> None:
        key = await asyncio.to_thread(master_key, cmp_dir(ctx.config))
        signer = await load_or_issue(ctx.config, settings, ctx.engine)
        ctx.reserve_key("the CMP signer", signer.key.public_key())
        ctx.watch(watch_source(ctx.config))
        secrets = OneTimeSecrets(
            ctx.store,
            ctx.clock.now,
            master_key=key,
            default_lifetime=timedelta(seconds=settings.secret_lifetime_seconds),
        )
        admin[SECRETS].value = secrets
        slot.value = Operations(
            CMPDeps(
                engine=ctx.engine,
                store=ctx.store,
                cas=ctx.cas,
                clock=ctx.clock,
                signer_key=signer.key,
                signer_chain=signer.chain,
                secret_for=secrets.secret_for,
                use_secret=secrets.use_secret,
                master_key=key,
                default_profile=settings.default_profile,
                trust_anchors=anchors,
                max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
                check_after_seconds=settings.check_after_seconds,
                grant_implicit_confirm=settings.implicit_confirm,
            )
        )

    return Mounted(
        (
            Mount("http", "/.well-known/cmp", app),
            Mount("https", "/api/v1/admin/cmp/", admin),
        ),
        start=start,
    )
