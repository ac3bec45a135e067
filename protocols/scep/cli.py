"""``certforge scep ...``: SCEP's command group."""

from __future__ import annotations

from server.cli import Commands, cmd_simple_post


def add_commands(commands: Commands) -> None:
    scep = commands.group("scep", "SCEP")
    commands.leaf(
        scep,
        "challenge",
        cmd_simple_post(
            "/api/v1/admin/scep/challenges",
            lambda b: str(b["challenge"]),
            lambda a: {"profile": a.profile} if a.profile else {},
        ),
        "print a one-time challenge password",
    ).add_argument("--profile", help="bind the challenge to this profile")
