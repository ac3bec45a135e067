"""``certforge est ...``: EST's command group (its users)."""

from __future__ import annotations

import argparse
import urllib.parse

from server.cli import Commands, cmd_simple_post, emit, make_client


def cmd_user_list(args: argparse.Namespace) -> None:
    _, body = make_client(args).call("GET", "/api/v1/admin/est/users")
    emit(args, body, "\n".join(f"{u['name']} {u['created_at']}" for u in body["users"]))


def cmd_user_remove(args: argparse.Namespace) -> None:
    name = urllib.parse.quote(args.name, safe="")
    make_client(args).call("DELETE", f"/api/v1/admin/est/users/{name}")
    emit(args, {"name": args.name, "removed": True}, f"{args.name} removed")


def add_commands(commands: Commands) -> None:
    est = commands.group("est", "EST")
    user = est.add_parser("user", help="EST users").add_subparsers(dest="sub", required=True)
    commands.leaf(
        user,
        "add",
        cmd_simple_post(
            "/api/v1/admin/est/users", lambda b: str(b["password"]), lambda a: {"name": a.name}
        ),
        "add a user and print its password",
    ).add_argument("name")
    commands.leaf(user, "list", cmd_user_list, "list EST users")
    commands.leaf(user, "remove", cmd_user_remove, "remove an EST user").add_argument("name")
