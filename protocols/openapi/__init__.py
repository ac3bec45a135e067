"""The OpenAPI 3.1 document of the REST and admin APIs, served at ``/api/v1/openapi.json``.

It describes every route under ``/api/v1`` (``protocols/rest``, ``protocols/admin``,
``protocols/acme/admin.py``): parameters, bodies, security and every status each can answer.
It is served without a token: it holds nothing the source does not, and a client needs it
before it has one (as an ACME client needs the directory). It is built once, when the front
end loads, from the model's enumerations and the inventory's filter lists, so it cannot drift
from them; ``tests/unit/test_openapi.py`` checks it names every mounted route and
``tests/integration/test_openapi.py`` runs schemathesis against the running server with it.

Not described: HEAD, which aiohttp answers on every GET route (the GET's headers, no body),
and the 404 and 405 problem documents of paths and methods that are not here.
"""

from __future__ import annotations

import json
from importlib.metadata import version

from aiohttp import web

from protocols.openapi.admin_paths import decision_paths, secret_paths, token_paths
from protocols.openapi.paths import inventory_paths, rest_paths
from protocols.openapi.schemas import JSON, responses, schemas
from protocols.rest.problems import problem_middleware
from server.config import Config
from server.frontend import FrontEnd, Mount, Mounted
from server.keys import FRONTEND

PREFIX = "/api/v1"
DOCUMENT = web.AppKey("openapi_document", bytes)

_DESCRIPTION = """\
certforge's native REST enrollment API (submit a CSR, poll, fetch CA chains) and its admin
API (the inventory, decisions, revocation, CRLs, enrollment secrets, tokens). Errors are
RFC 9457 problem documents (application/problem+json). Admin operations need a bearer token
whose roles permit them (README: Tokens and roles); a refusal changes nothing."""


def document() -> JSON:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "certforge REST and admin API",
            "version": version("certforge"),
            "description": _DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        # Relative: the document is right wherever the server is reached.
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "paths": rest_paths()
        | inventory_paths()
        | decision_paths()
        | secret_paths()
        | token_paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a certforge token (certforge token create; admin.token)",
                }
            },
            "schemas": schemas(),
            "responses": responses(),
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


def mount(config: Config) -> Mounted:
    app = web.Application(middlewares=[problem_middleware])
    app[FRONTEND] = "openapi"
    app[DOCUMENT] = json.dumps(document(), indent=1).encode()
    app.router.add_get("", openapi_json)
    return Mounted((Mount("https", f"{PREFIX}/openapi.json", app),))


frontend = FrontEnd(name="openapi", mount=mount)
