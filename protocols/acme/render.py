"""Response helpers: JSON objects with the headers RFC 8555 asks for.

Replay-Nonce and Link rel="index" are added to every response by the ACME sub-app's
headers middleware (``protocols.acme.__init__``); the helpers here add "Location",
"Link: rel=up" and "Retry-After" where the resource calls for them.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


def acme_json(
    body: dict[str, Any],
    *,
    status: int = 200,
    location: str | None = None,
    up: str | None = None,
    retry_after: int | None = None,
) -> web.Response:
    headers: dict[str, str] = {}
    if location:
        headers["Location"] = location
    if up:
        headers["Link"] = f'<{up}>;rel="up"'
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )
