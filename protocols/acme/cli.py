"""``certforge acme ...``: ACME's command group (EAB credentials, renewal marks)."""

from __future__ import annotations

from server.cli import Commands, cmd_simple_post


def add_commands(commands: Commands) -> None:
    acme = commands.group("acme", "ACME")
    eab = acme.add_parser("eab", help="External Account Binding").add_subparsers(
        dest="sub", required=True
    )
    commands.leaf(
        eab,
        "create",
        cmd_simple_post("/api/v1/admin/acme/eab", lambda b: f"{b['kid']} {b['hmac_key']}"),
        "create EAB credentials, printed as KID HMAC_KEY",
    )
    p = commands.leaf(
        acme,
        "renew",
        cmd_simple_post(
            "/api/v1/admin/acme/renewal",
            lambda b: f"marked {b['marked']} at {b['at']}",
            lambda a: {
                k: v
                for k, v in (("serial", a.serial), ("key_sha256", a.key), ("issuer", a.issuer))
                if v
            },
        ),
        "ask ACME clients (RFC 9773 renewal info) to renew certificates now",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", help="one certificate, by hexadecimal serial")
    which.add_argument("--key", help="every certificate of this key (hex SHA-256 of its SPKI)")
    which.add_argument("--issuer", help="every certificate of this issuing CA")
