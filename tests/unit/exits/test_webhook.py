"""The webhook exit against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from server.config import Config, ServerConfig
from server.errors import ConfigError
from server.exits.base import Closable, ExitModule
from server.exits.webhook import DeliveryFailed, WebhookExit, create
from server.model import Event, EventKind

SECRET = "s3cret"
CONFIG = Config(server=ServerConfig(data_dir=Path("/nonexistent")))


@dataclass
class Receiver:
    """What the test endpoint received, and how it answers."""

    status: int = 204
    stall: asyncio.Event | None = None
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        if self.stall is not None:
            await self.stall.wait()
        return web.Response(status=self.status)


Endpoint = Callable[..., Awaitable[WebhookExit]]


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> AsyncIterator[tuple[Receiver, str]]:
    rx = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rx.handle)
    server = await aiohttp_server(app)
    yield rx, str(server.make_url("/hook"))
    if rx.stall is not None:
        rx.stall.set()  # let a stalled handler finish so the server closes promptly


@pytest.fixture
async def make_webhook(receiver: tuple[Receiver, str]) -> AsyncIterator[Endpoint]:
    made: list[WebhookExit] = []

    async def make(**options: Any) -> WebhookExit:
        module = create(CONFIG, {"name": "hooks", "url": receiver[1], **options})
        made.append(module)
        return module

    yield make
    for module in made:
        await module.close()


def make_event(kind: EventKind = EventKind.ISSUED) -> Event:
    return Event(
        kind=kind,
        at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        request_id="r1",
        serial=0xABC,
        data={"profile": "tls-server", "serial": "abc"},
        id="ev1",
    )


async def test_posts_the_event_as_signed_json(
    receiver: tuple[Receiver, str], make_webhook: Endpoint
) -> None:
    rx, _ = receiver
    hooks = await make_webhook(secret=SECRET, headers={"Authorization": "Bearer t"})
    await hooks.deliver(make_event())
    [(headers, body)] = rx.requests
    assert json.loads(body) == make_event().to_json()
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Certforge-Event-Id"] == "ev1"
    assert headers["Authorization"] == "Bearer t"
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Certforge-Signature"] == f"sha256={expected}"


async def test_unsigned_without_a_secret(
    receiver: tuple[Receiver, str], make_webhook: Endpoint
) -> None:
    rx, _ = receiver
    hooks = await make_webhook()
    await hooks.deliver(make_event())
    [(headers, _body)] = rx.requests
    assert "X-Certforge-Signature" not in headers


async def test_configured_headers_cannot_shadow_ours(
    receiver: tuple[Receiver, str], make_webhook: Endpoint
) -> None:
    rx, _ = receiver
    hooks = await make_webhook(
        headers={"content-type": "text/plain", "x-certforge-event-id": "forged"}
    )
    await hooks.deliver(make_event())
    [(headers, _body)] = rx.requests
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Certforge-Event-Id"] == "ev1"


async def test_events_outside_the_filter_are_not_sent(
    receiver: tuple[Receiver, str], make_webhook: Endpoint
) -> None:
    rx, _ = receiver
    hooks = await make_webhook(events=["revoked"])
    await hooks.deliver(make_event(EventKind.ISSUED))
    assert rx.requests == []
    await hooks.deliver(make_event(EventKind.REVOKED))
    assert len(rx.requests) == 1


@pytest.mark.parametrize("status", [500, 404, 302])
async def test_an_answer_other_than_2xx_raises(
    receiver: tuple[Receiver, str], make_webhook: Endpoint, status: int
) -> None:
    rx, _ = receiver
    rx.status = status
    hooks = await make_webhook()
    with pytest.raises(DeliveryFailed, match=str(status)):
        await hooks.deliver(make_event())


async def test_a_stalled_endpoint_times_out(
    receiver: tuple[Receiver, str], make_webhook: Endpoint
) -> None:
    rx, _ = receiver
    rx.stall = asyncio.Event()
    hooks = await make_webhook(timeout_seconds=0.1)
    with pytest.raises(TimeoutError):
        await hooks.deliver(make_event())


async def test_a_refused_connection_raises(unused_tcp_port: int) -> None:
    hooks = create(CONFIG, {"name": "hooks", "url": f"http://127.0.0.1:{unused_tcp_port}/"})
    try:
        with pytest.raises(aiohttp.ClientConnectionError):
            await hooks.deliver(make_event())
    finally:
        await hooks.close()


async def test_close_then_deliver_opens_a_new_session(
    receiver: tuple[Receiver, str], make_webhook: Endpoint
) -> None:
    rx, _ = receiver
    hooks = await make_webhook()
    await hooks.deliver(make_event())
    await hooks.close()
    await hooks.close()  # idempotent
    await hooks.deliver(make_event())
    assert len(rx.requests) == 2


def test_is_an_exit_module_that_needs_closing() -> None:
    hooks = create(CONFIG, {"name": "hooks", "url": "https://example.com/hook"})
    assert isinstance(hooks, ExitModule)
    assert isinstance(hooks, Closable)
    assert hooks.name == "hooks"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        pytest.param({}, "url", id="missing/url"),
        pytest.param({"url": "ftp://example.com/"}, "url", id="bad_url/scheme"),
        pytest.param({"url": "https:///path"}, "url", id="bad_url/no_host"),
        pytest.param({"url": 5}, "url", id="bad_type/url"),
        pytest.param({"secret": ""}, "secret", id="bad_secret/empty"),
        pytest.param({"timeout_seconds": 0}, "timeout_seconds", id="bad_timeout/zero"),
        pytest.param({"timeout_seconds": "10"}, "timeout_seconds", id="bad_timeout/string"),
        pytest.param({"timeout_seconds": True}, "timeout_seconds", id="bad_timeout/bool"),
        pytest.param({"events": ["issued", "exploded"]}, "events", id="bad_events/unknown"),
        pytest.param({"events": []}, "events", id="bad_events/empty"),
        pytest.param({"events": "issued"}, "events", id="bad_events/not_a_list"),
        pytest.param({"headers": {"X-A": 1}}, "headers", id="bad_headers/value_type"),
        pytest.param({"headers": {"X A": "v"}}, "headers", id="bad_headers/name"),
        pytest.param({"headers": {"X-A": "v\r\nX-B: w"}}, "headers", id="bad_headers/crlf"),
        pytest.param({"colour": "blue"}, "colour", id="unknown_key"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    full = {"name": "hooks", "url": "https://example.com/hook", **options}
    if "url" not in options and key == "url":
        del full["url"]
    with pytest.raises(ConfigError, match=rf"^\[\[exits\]\] hooks {key}: "):
        create(CONFIG, full)


def test_the_name_defaults_to_the_type() -> None:
    assert create(CONFIG, {"url": "http://127.0.0.1/"}).name == "webhook"
