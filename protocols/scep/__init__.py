"""SCEP (RFC 8894), mounted at ``/scep`` on the HTTP listener (the contract's endpoint)."""

from __future__ import annotations

from protocols.scep.cli import add_commands
from protocols.scep.config import SECTION
from server.config import Config, ProtocolAuth
from server.frontend import FrontEnd, Mounted


def _mount(config: Config) -> Mounted:
    # Imported when the server mounts it: the command line loads only config and commands.
    from protocols.scep.app import mount

    return mount(config)


frontend = FrontEnd(
    name="scep",
    mount=_mount,
    section=SECTION,
    auth=ProtocolAuth("scep", default=("challenge_password", "client_cert")),
    cli=add_commands,
)
