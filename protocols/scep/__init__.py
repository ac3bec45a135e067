"""SCEP (RFC 8894), mounted at ``/scep`` on the HTTP listener (the contract's endpoint)."""

from __future__ import annotations

from aiohttp import web

from protocols.scep.handlers import STATE, SCEPState, add_routes, scep_errors
from protocols.scep.ra import stored_ra_keys, watch_source
from server.config import Config
from server.frontend import Mount
from server.keys import FRONTEND

# A pkiMessage is a CSR, a certificate and a few attributes: a few KiB. Larger is refused
# (413) before it is read.
MAX_MESSAGE_BYTES = 64 * 1024


def frontend(config: Config) -> list[Mount]:
    app = web.Application(
        middlewares=[scep_errors],
        client_max_size=min(MAX_MESSAGE_BYTES, config.server.max_body_bytes),
    )
    app[FRONTEND] = "scep"
    app[STATE] = SCEPState()
    add_routes(app)
    return [
        Mount(
            "http",
            "/scep",
            app,
            held_keys=lambda: stored_ra_keys(config),
            watched=(watch_source(config),),
        )
    ]
