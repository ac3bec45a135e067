"""CMP, the Lightweight CMP Profile (RFC 9483 on RFC 4210/9480, CRMF RFC 4211, HTTP RFC 6712).

``frontend`` is the entry point (``certforge.frontends``): ``[cmp]`` (``config``),
``certforge cmp secret`` (``cli``), its admin route (``admin``), and the sub-application at
``/.well-known/cmp`` on the HTTP listener (as SCEP: CMP protects its messages itself), whose
``CMPDeps`` the start hook builds (``app``). ``cmp_app(deps)`` is that sub-application for
deps built by hand (tests/interop/cmp).

Modules: ``messages`` (sans-I/O PKIMessage), ``protection`` (MAC and signatures), ``pop``,
``certreq`` (a CRMF request for the engine), ``secrets``, ``signer`` (the answers' signer and
the secrets' master key), ``transactions``, ``enroll`` (ir, cr, kur, p10cr, certConf,
pollReq), ``operations`` (authentication, rr, genm, answers), ``failinfo`` (the error
table), ``handlers`` (HTTP).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protocols.cmp.cli import add_commands
from protocols.cmp.config import SECTION
from server.config import Config, ProtocolAuth
from server.frontend import FrontEnd, Mounted

if TYPE_CHECKING:
    from aiohttp import web

    from protocols.cmp.deps import CMPDeps


def cmp_app(deps: CMPDeps) -> web.Application:
    from protocols.cmp.app import started_app

    return started_app(deps)


def _mount(config: Config) -> Mounted:
    # Imported when the server mounts it: the command line loads only config and commands.
    from protocols.cmp.app import mount

    return mount(config)


frontend = FrontEnd(
    name="cmp",
    mount=_mount,
    section=SECTION,
    # A MAC from a one-time secret is a challenge password's proof; a signature, a
    # certificate's.
    auth=ProtocolAuth("cmp", default=("challenge_password", "client_cert")),
    cli=add_commands,
)
