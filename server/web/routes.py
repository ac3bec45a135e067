"""The process's own routes: health, metrics, the CA certificates AIA points at, and the CRLs
the CRL distribution points name."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from server.keys import CAS, CONFIG, CRLS, METRICS
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


async def crl(request: web.Request) -> web.Response:
    """The newest CRL of a CA, at the URL its certificates' CRL distribution point names.

    RFC 5280 §4.2.1.13 and §4.2.2.1: a CRL over HTTP is DER, ``application/pkix-crl``. It may be
    cached until a newer one is due: until the next scheduled CRL, and never past nextUpdate.
    """
    key = request.match_info["name"]
    if "shard" in request.match_info:
        key += "/" + request.match_info["shard"]
    published = await request.config_dict[CRLS].current(key)
    if published is None:
        raise web.HTTPNotFound(text="no such CRL\n")
    if request.headers.get("If-None-Match") == published.etag:
        raise web.HTTPNotModified(headers={"ETag": published.etag})
    interval = request.config_dict[CONFIG].crl.interval_minutes * 60
    remaining = int((published.next_update - datetime.now(UTC)).total_seconds())
    max_age = max(0, min(interval, remaining))
    return web.Response(
        body=published.der,
        headers={
            "Content-Type": "application/pkix-crl",
            "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
            "Last-Modified": http_date(published.this_update),
            "Expires": http_date(published.next_update),
            "ETag": published.etag,
        },
    )


@lru_cache(maxsize=4096)
def http_date(value: datetime) -> str:
    """RFC 9110 §5.6.7 IMF-fixdate."""
    return value.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def add_https_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


def add_http_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/ca/{name}.cer", ca_certificate)
    app.router.add_get("/crl/{name}.crl", crl)
    app.router.add_get("/crl/{name}/{shard}.crl", crl)
