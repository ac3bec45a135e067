"""``certforge cmp ...``: CMP's command group."""

from __future__ import annotations

from server.cli import Commands, cmd_simple_post


def add_commands(commands: Commands) -> None:
    cmp = commands.group("cmp", "CMP")
    commands.leaf(
        cmp,
        "secret",
        cmd_simple_post(
            "/api/v1/admin/cmp/secrets",
            lambda b: f"{b['reference']} {b['secret']}",
            lambda a: {"profile": a.profile} if a.profile else {},
        ),
        "print a one-time shared secret as REFERENCE SECRET (openssl cmp -ref, -secret)",
    ).add_argument("--profile", help="bind the secret to this profile")
