"""CMP's admin route, a sub-app at ``/api/v1/admin/cmp/``: ``POST /secrets`` makes a
one-time secret (``certforge cmp secret``), body ``{"profile": ...}`` (optional), answered
once with ``{"reference", "secret", "expires", "profile"}`` (201). The reference is what the
client sends as its senderKID (``openssl cmp -ref REFERENCE -secret pass:SECRET``)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from protocols.admin.handlers import _json_body as json_body
from protocols.cmp.secrets import OneTimeSecrets
from protocols.rest.auth import require
from protocols.rest.problems import problem_middleware
from server.errors import Malformed
from server.keys import ENGINE, FRONTEND
from server.roles import Permission


@dataclass
class SecretsSlot:
    value: OneTimeSecrets | None = None  # filled by the start hook (protocols.cmp.app)


SECRETS = web.AppKey("cmp_secrets", SecretsSlot)


async def create_secret(request: web.Request) -> web.Response:
    await require(request, Permission.ENROLLMENT_SECRETS)
    profile = (await json_body(request)).get("profile")
    if profile is not None:
        if not isinstance(profile, str):
            raise Malformed("profile must be a profile name")
        request.config_dict[ENGINE].profile(profile)  # UnknownProfile if there is none
    secrets = request.app[SECRETS].value
    if secrets is None:  # the start hook runs before the listeners accept anything
        raise RuntimeError("the CMP front end was not started")
    reference, secret, expires = await secrets.create(profile=profile)
    return web.json_response(
        {
            "reference": reference,
            "secret": secret,
            "expires": expires.isoformat(),
            "profile": profile,
        },
        status=201,
    )


def admin_app(max_body_bytes: int) -> web.Application:
    app = web.Application(middlewares=[problem_middleware], client_max_size=max_body_bytes)
    app[FRONTEND] = "admin"
    app[SECRETS] = SecretsSlot()
    app.router.add_post("/secrets", create_secret)
    return app
