"""The process's own routes: health, metrics, and the CA certificates AIA points at."""

from __future__ import annotations

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from server.keys import CAS, METRICS
from server.web.metrics import CONTENT_TYPE


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def metrics(request: web.Request) -> web.Response:
    body = request.config_dict[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def ca_certificate(request: web.Request) -> web.Response:
    """RFC 5280 §4.2.2.1: caIssuers points at a DER certificate (application/pkix-cert)."""
    cas = request.config_dict[CAS]
    name = request.match_info["name"]
    if name == "root":
        cert = cas.root
    elif name in cas.issuers:
        cert = cas.issuers[name].certificate
    else:
        raise web.HTTPNotFound(text="no such CA certificate\n")
    return web.Response(
        body=cert.public_bytes(Encoding.DER),
        headers={"Content-Type": "application/pkix-cert", "Cache-Control": "public, max-age=3600"},
    )


def add_https_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


def add_http_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ca/{name}.cer", ca_certificate)
