"""The SCEP sub-applications: the protocol at ``/scep`` (HTTP listener), its admin routes at
``/api/v1/admin/scep/``, and the start hook that gives them the engine and the RA."""

from __future__ import annotations

import asyncio

from aiohttp import web

from protocols.scep.admin import admin_app
from protocols.scep.config import SECTION
from protocols.scep.handlers import STATE, SCEPState, add_routes, scep_errors
from protocols.scep.operations import Operations
from protocols.scep.ra import Identities, stored_ra_keys, watch_source
from server.config import Config
from server.frontend import FrontEndContext, Mount, Mounted
from server.keys import FRONTEND

# A pkiMessage is a CSR, a certificate and a few attributes: a few KiB. Larger is refused
# (413) before it is read.
MAX_MESSAGE_BYTES = 64 * 1024


def mount(config: Config) -> Mounted:
    app = web.Application(
        middlewares=[scep_errors],
        client_max_size=min(MAX_MESSAGE_BYTES, config.server.max_body_bytes),
    )
    app[FRONTEND] = "scep"
    state = SCEPState()
    app[STATE] = state
    add_routes(app)

    async def start(ctx: FrontEndContext) -> None:
        # The RA keys already in the data directory are reserved before any request; those
        # made later are reserved by Identities as it makes them.
        for holder, key in await asyncio.to_thread(stored_ra_keys, ctx.config):
            ctx.reserve_key(holder, key)
        ctx.watch(watch_source(ctx.config))
        state.identities = Identities(ctx.config, ctx.engine)
        state.operations = Operations(ctx.engine, ctx.challenges, SECTION.of(ctx.config), ctx.crls)

    return Mounted(
        (
            Mount("http", "/scep", app),
            Mount("https", "/api/v1/admin/scep/", admin_app(config.server.max_body_bytes)),
        ),
        start=start,
    )
