"""SCEP's admin routes, a sub-app at ``/api/v1/admin/scep/``: one-time challenge passwords
(``certforge scep challenge``), which EST accepts too."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from protocols.admin.handlers import _json_body as json_body
from protocols.rest.auth import require
from protocols.rest.problems import problem_middleware
from protocols.scep.config import SECTION
from server.challenges import MAX_LIFETIME
from server.errors import Malformed
from server.keys import CHALLENGES, CONFIG, ENGINE, FRONTEND
from server.roles import Permission


async def create_scep_challenge(request: web.Request) -> web.Response:
    """A one-time challenge password for SCEP (and EST); optionally bound to a profile and
    with its own lifetime: body ``{"profile": ..., "lifetime_seconds": ...}``, both optional."""
    await require(request, Permission.ENROLLMENT_SECRETS)
    body = await json_body(request)
    profile, seconds = body.get("profile"), body.get("lifetime_seconds")
    if profile is not None:
        if not isinstance(profile, str):
            raise Malformed("profile must be a profile name")
        request.config_dict[ENGINE].profile(profile)  # UnknownProfile if there is none
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int) or abs(seconds) > 10**9
    ):
        # Far beyond any lifetime Challenges.create allows, and before timedelta overflows
        # (it did, a 500, for 2**70).
        raise Malformed("lifetime_seconds must be an integer number of seconds")
    # Bounded before it becomes a timedelta, which overflows past about 2**46 seconds.
    if seconds is not None and not 0 < seconds <= MAX_LIFETIME.total_seconds():
        raise Malformed(f"lifetime_seconds must be 1..{int(MAX_LIFETIME.total_seconds())}")
    password, expires = await request.config_dict[CHALLENGES].create(
        profile=profile,
        lifetime=timedelta(
            seconds=SECTION.of(request.config_dict[CONFIG]).challenge_lifetime_seconds
            if seconds is None
            else seconds
        ),
    )
    return web.json_response(
        {"challenge": password, "expires": expires.isoformat(), "profile": profile}, status=201
    )


def admin_app(max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=max_body_bytes)
    app[FRONTEND] = "admin"
    app.router.add_post("/challenges", create_scep_challenge)
    return app
