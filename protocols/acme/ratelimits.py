"""ACME's rate limits (``[acme] *_per_hour``): the engine's fixed one-hour windows
(``server/ratelimits.py``), counted in ``acme-ratelimit`` documents and answered with the
``rateLimited`` problem and Retry-After."""

from __future__ import annotations

from collections.abc import Sequence

from protocols.acme.context import ACME
from server import ratelimits

KIND = "acme-ratelimit"


async def check_and_count(acme: ACME, scopes: Sequence[str], limit: int, what: str) -> None:
    """Refuse if any scope reached ``limit`` this hour; otherwise count one for each."""
    await ratelimits.check_and_count(acme.store, acme.clock, KIND, scopes, limit, what)
