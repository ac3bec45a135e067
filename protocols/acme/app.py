"""The ACME sub-applications: the protocol at ``/acme/``, its admin routes at
``/api/v1/admin/acme/``, and the start hook that gives them the engine."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from protocols.acme import accounts, ari, authz, directory, nonces, orders, revoke
from protocols.acme.admin import admin_app
from protocols.acme.context import ACME, BACKGROUND, CONTEXT, PREFIX, Background, ContextSlot, URLs
from protocols.acme.problems import problem_middleware
from server.config import Config
from server.frontend import FrontEndContext, Mount, Mounted
from server.keys import FRONTEND


@web.middleware
async def acme_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """RFC 8555 §6.5: a fresh Replay-Nonce on every response (errors included, so a client
    can retry a badNonce at once); §7.1: Link rel="index" to the directory."""
    response = await handler(request)
    acme = ACME.of(request)
    key = await request.config_dict[nonces.NONCE_KEY].get(acme.store)
    response.headers["Replay-Nonce"] = await nonces.new_nonce(acme, key)
    response.headers.add("Link", f'<{acme.urls.directory}>;rel="index"')
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def mount(config: Config) -> Mounted:
    # RFC 8555 §6.2 asks nothing of the size; the sub-app's limit refuses oversized bodies
    # (413, as a malformed problem) before any JWS parsing.
    app = web.Application(
        middlewares=[acme_headers, problem_middleware],
        client_max_size=config.server.max_body_bytes,
    )
    app[FRONTEND] = "acme"
    background = Background()
    app[BACKGROUND] = background
    slot = ContextSlot()
    app[CONTEXT] = slot
    app[nonces.NONCE_KEY] = nonces.NonceKey()

    async def stop_validations(_: web.Application) -> None:
        await background.close()

    app.on_shutdown.append(stop_validations)
    add_routes(app)

    async def start(ctx: FrontEndContext) -> None:
        slot.value = ACME(
            config=ctx.config,
            store=ctx.store,
            engine=ctx.engine,
            clock=ctx.clock,
            urls=URLs(ctx.config.server.public_https_url + PREFIX),
            background=background,
        )

    return Mounted(
        (
            Mount("https", "/acme/", app),
            Mount("https", "/api/v1/admin/acme/", admin_app(config.server.max_body_bytes)),
        ),
        start=start,
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/directory", directory.directory)
    r.add_route("HEAD", "/new-nonce", nonces.handle_new_nonce)
    r.add_get("/new-nonce", nonces.handle_new_nonce, allow_head=False)
    r.add_post("/new-account", accounts.new_account)
    r.add_post("/acct/{account_id}", accounts.update_account)
    r.add_post("/acct/{account_id}/orders", accounts.list_orders)
    r.add_post("/key-change", accounts.key_change)
    r.add_post("/new-order", orders.new_order)
    r.add_post("/order/{order_id}", orders.get_order)
    r.add_post("/order/{order_id}/finalize", orders.finalize)
    r.add_post("/cert/{order_id}", orders.certificate)
    r.add_post("/authz/{authz_id}", authz.get_authz)
    r.add_post("/chall/{authz_id}/{type}", authz.respond_challenge)
    r.add_post("/revoke-cert", revoke.revoke_cert)
    r.add_get("/renewal-info/{cert_id}", ari.renewal_info)
