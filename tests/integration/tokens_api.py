"""Calls to the admin API for the token tests: each on a fresh connection (so that, with
several workers, the kernel spreads them), answering the status and the decoded body."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from tests.integration.server import CertforgeServer


def api(
    server: CertforgeServer,
    method: str,
    path: str,
    token: str,
    body: dict[str, Any] | None = None,
) -> tuple[int, Any, str]:
    """``(status, body, content type)``; a JSON body is decoded."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=server.ssl_context(), timeout=30) as resp:
            status, raw, ctype = resp.status, resp.read(), resp.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        status, raw, ctype = exc.code, exc.read(), exc.headers.get_content_type()
    return status, json.loads(raw) if ctype.endswith("json") and raw else raw, ctype


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # polling another process's state; there is no event to await
    raise AssertionError(f"not so within {timeout} s")


def tokens_by_name(server: CertforgeServer, name: str) -> list[dict[str, Any]]:
    status, body, _ = api(server, "GET", "/api/v1/admin/tokens", server.token)
    assert status == 200, body
    return [t for t in body["tokens"] if t["name"] == name]
