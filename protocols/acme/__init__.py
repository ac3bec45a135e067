"""The ACME front end (RFC 8555, RFC 8737 tls-alpn-01, RFC 8738 IP identifiers, RFC 9773
renewal information, the ACME profiles draft), mounted at ``/acme/`` on the HTTPS listener.

One module per resource: ``directory``, ``nonces``, ``accounts`` (+ ``eab``), ``orders``,
``authz`` (authorizations and challenges, validated by ``validation``), ``revoke``, ``ari``;
``requests`` authenticates every POST (``jws``), ``problems`` is the one error table,
``records`` keeps the ACME objects as store documents. ``admin`` adds EAB credentials and
renewal marks to the admin API.
"""

from __future__ import annotations

from protocols.acme.cli import add_commands
from protocols.acme.config import SECTION
from server.config import Config, ProtocolAuth
from server.frontend import FrontEnd, Mounted


def _mount(config: Config) -> Mounted:
    # Imported when the server mounts it, so that the command line loads only the config
    # and command modules of each front end.
    from protocols.acme.app import mount

    return mount(config)


frontend = FrontEnd(
    name="acme",
    mount=_mount,
    section=SECTION,
    auth=ProtocolAuth("acme", default=("acme_account",)),
    cli=add_commands,
)
