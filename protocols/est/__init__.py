"""The EST front end (RFC 7030, RFC 8951), mounted at ``/.well-known/est/`` on HTTPS."""

from __future__ import annotations

from protocols.est.cli import add_commands
from protocols.est.config import SECTION
from server.config import Config, ProtocolAuth
from server.frontend import FrontEnd, Mounted


def _mount(config: Config) -> Mounted:
    # Imported when the server mounts it: the command line loads only config and commands.
    from protocols.est.app import mount

    return mount(config)


frontend = FrontEnd(
    name="est",
    mount=_mount,
    section=SECTION,
    auth=ProtocolAuth(
        "est", default=("est_basic", "client_cert", "challenge_password"), methods=()
    ),
    cli=add_commands,
)
