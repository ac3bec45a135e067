"""The webhook exit: POSTs each event as JSON to an HTTP(S) endpoint.

The body is ``Event.to_json()``. Headers: ``Content-Type: application/json``,
``X-Certforge-Event-Id`` (the receiver's key for idempotence: delivery is at least once), and
with a ``secret``, ``X-Certforge-Signature: sha256=<hex HMAC-SHA256 of the exact body>`` (the
GitHub webhook convention, so existing receivers can verify it).

Any answer other than 2xx, a connection error or a timeout raises, and the dispatcher retries
with backoff. Redirects are not followed: a signed body must not be replayed to a host
the configuration did not name.

Options (``[[exits]]`` with ``type = "webhook"``): ``url`` (required), ``secret``,
``timeout_seconds`` (default 10), ``events`` (kinds to send; others are acknowledged unsent),
``headers`` (a table of extra headers; certforge's own headers win over them).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from multidict import CIMultiDict

from server.config import Config
from server.exits.base import ExitOptions
from server.model import Event, EventKind

SIGNATURE_HEADER = "X-Certforge-Signature"
EVENT_ID_HEADER = "X-Certforge-Event-Id"


class DeliveryFailed(Exception):
    """The endpoint answered, but not with 2xx."""


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Certforge-Signature`` value a receiver recomputes to trust the body."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class WebhookExit:
    """Posts events; holds one ``aiohttp.ClientSession``, made on first use.

    The session is created lazily because it belongs to the event loop it is made on: the
    factory runs at load time, possibly before the serving loop exists.
    """

    def __init__(
        self,
        name: str,
        *,
        url: str,
        secret: bytes | None = None,
        timeout: float = 10.0,
        events: frozenset[EventKind] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self._secret = secret
        self._timeout = timeout
        self._events = events
        self._headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    async def deliver(self, event: Event) -> None:
        if self._events is not None and event.kind not in self._events:
            return
        body = json.dumps(event.to_json(), separators=(",", ":")).encode()
        # Case-insensitive, so that a configured header can never shadow one of ours.
        headers = CIMultiDict(self._headers)
        headers["Content-Type"] = "application/json"
        headers[EVENT_ID_HEADER] = event.id
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        # The timeout covers connecting, sending and the answer, so that a stalled endpoint
        # never holds this exit's loop longer than configured.
        async with asyncio.timeout(self._timeout):
            session = self._get_session()
            async with session.post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                if not 200 <= resp.status < 300:
                    raise DeliveryFailed(
                        f"{self.url} answered HTTP {resp.status} to event {event.id}"
                    )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": "certforge-webhook"}, raise_for_status=False
            )
        return self._session


def create(config: Config, options: Mapping[str, Any]) -> WebhookExit:
    """The ``certforge.exits`` entry point ``webhook``."""
    opts = ExitOptions(options, default_name="webhook")
    url = opts.required_string("url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise opts.error("url", f"{url!r} is not an http:// or https:// URL")
    secret = opts.optional_string("secret")
    if secret == "":
        raise opts.error("secret", "is empty; leave it out to send unsigned")
    module = WebhookExit(
        opts.name,
        url=url,
        secret=None if secret is None else secret.encode(),
        timeout=opts.positive_number("timeout_seconds", 10.0),
        events=opts.events(),
        headers=_headers(opts),
    )
    opts.done()
    return module


def _headers(opts: ExitOptions) -> dict[str, str]:
    headers = opts.string_table("headers")
    for key, value in headers.items():
        # RFC 9110 §5.1: a field name is a token; and no value may smuggle a line break.
        if not key or any(c in key for c in ' \t:()<>@,;\\"/[]?={}') or not key.isprintable():
            raise opts.error("headers", f"{key!r} is not a header name")
        if "\r" in value or "\n" in value:
            raise opts.error("headers", f"{key}: the value contains a line break")
    return headers
