"""CMP, the Lightweight CMP Profile (RFC 9483 on RFC 4210/9480, CRMF RFC 4211, HTTP RFC 6712).

``cmp_app(deps)`` is the sub-application to mount at ``/.well-known/cmp`` (on the HTTP
listener, as SCEP: CMP protects its messages itself). It depends only on ``CMPDeps``, built
at start by the wiring, which also hands out one-time secrets
(``protocols.cmp.secrets.OneTimeSecrets``).

Modules: ``messages`` (sans-I/O PKIMessage), ``protection`` (MAC and signatures), ``pop``,
``certreq`` (a CRMF request for the engine), ``secrets``, ``transactions``, ``enroll`` (ir,
cr, kur, p10cr, certConf, pollReq), ``operations`` (authentication, rr, genm, answers),
``failinfo`` (the error table), ``handlers`` (HTTP).
"""

from __future__ import annotations

from aiohttp import web

from protocols.cmp.deps import CMPDeps
from protocols.cmp.handlers import OPERATIONS, add_routes
from protocols.cmp.messages import MAX_MESSAGE_BYTES
from protocols.cmp.operations import Operations

__all__ = ["CMPDeps", "cmp_app"]


def cmp_app(deps: CMPDeps) -> web.Application:
    app = web.Application(client_max_size=MAX_MESSAGE_BYTES)
    app[OPERATIONS] = Operations(deps)
    add_routes(app)
    return app
