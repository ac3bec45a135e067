"""CMP over HTTP (RFC 6712): ``POST /.well-known/cmp`` and ``/.well-known/cmp/p/<profile>``.

RFC 6712 §3.3 and §3.4: the request and the answer are one DER PKIMessage each, of media
type ``application/pkixcmp``; every answer certforge can express as a PKIMessage (an error
message included) is a 200. Plain HTTP errors are kept for what cannot be answered in CMP:
another media type (415), a body that is not a PKIMessage (400), a body over
``MAX_MESSAGE_BYTES`` (413, from aiohttp's ``client_max_size``).

RFC 9483 §3.4 names profiles by path: ``/.well-known/cmp/p/<name>`` serves certforge's
profile of that name; an unknown name is an error message (badRequest) when the request can
be read, since the endpoint exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from aiohttp import web

from protocols.cmp.failinfo import NotAPKIMessage
from protocols.cmp.messages import read_message
from protocols.cmp.operations import Operations

PKIXCMP = "application/pkixcmp"


@dataclass
class OperationsSlot:
    """Filled when the server starts (``protocols.cmp.app``): CMPDeps exist only then."""

    value: Operations | None = None


OPERATIONS = web.AppKey("cmp_operations", OperationsSlot)


async def cmp_endpoint(request: web.Request) -> web.Response:
    if request.content_type != PKIXCMP:
        return web.Response(
            status=HTTPStatus.UNSUPPORTED_MEDIA_TYPE, text=f"send {PKIXCMP} (RFC 6712 §3.4)\n"
        )
    try:
        msg = read_message(await request.read())
    except NotAPKIMessage as exc:
        return web.Response(status=HTTPStatus.BAD_REQUEST, text=f"{exc}\n")
    operations = request.app[OPERATIONS].value
    if operations is None:  # the start hook runs before the listeners accept anything
        raise RuntimeError("the CMP front end was not started")
    answer = await operations.handle(msg, profile=request.match_info.get("profile"))
    return web.Response(body=answer, content_type=PKIXCMP)


def add_routes(app: web.Application) -> None:
    app.router.add_post("", cmp_endpoint)
    app.router.add_post("/p/{profile}", cmp_endpoint)
