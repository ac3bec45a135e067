"""Reading a request's body, for every front end.

aiohttp undoes a request's ``Content-Encoding`` (gzip, deflate, br) while the body is read,
and a body that does not decode raises its own ``RequestPayloadError`` there, which no
protocol's error table knows: it was a 500 with a traceback, before any authentication. Read
through here, it is the engine's ``Malformed``, which each protocol answers in its format
(and aiohttp's own record of the unread rest is made an info line by
``server.web.requestlog.RefusedHeads``).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from server.errors import Malformed


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The whole body (bounded by the app's ``client_max_size``), or its first ``limit``
    octets when ``limit`` is given."""
    try:
        if limit is None:
            return await request.read()
        return await request.content.read(limit)
    except (RequestPayloadError, HttpProcessingError) as exc:
        encoding = request.headers.get("Content-Encoding", "")
        detail = f"the body's Content-Encoding ({encoding}) does not decode" if encoding else ""
        raise Malformed(detail or "the body cannot be read") from exc
