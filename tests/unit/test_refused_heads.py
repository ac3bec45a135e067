"""Request heads aiohttp refuses (server.web.requestlog.RefusedHeads): through a real
``web.AppRunner`` given ``protocol_logger``, as ``server.app.serve`` does, each is answered
400 and logged once at info level, without a traceback or the refused bytes; the records of
real failures pass unchanged."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong

from server.web.requestlog import PROTOCOL_LOG, RefusedHeads, protocol_logger

SECRET = b"s3cr3t" * 1500  # 9,000 bytes


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_get("/", _ok)
    runner = web.AppRunner(app, access_log=None, logger=protocol_logger())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield int(runner.addresses[0][1])
    await runner.cleanup()


async def _status(port: int, head: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


HEADS = [
    pytest.param(b"GET /" + SECRET + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="url"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + SECRET + b"\r\n\r\n", id="header"),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET + b"\r\n\r\n",
        id="bearer_token",
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: 1\r\n" * 200 + b"\r\n", id="headers"),
]


@pytest.mark.parametrize("head", HEADS)
async def test_a_refused_head_is_one_info_line(
    port: int, head: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert await _status(port, head) == 400
    refused = [r for r in caplog.records if r.name == PROTOCOL_LOG]
    assert len(refused) == 1
    assert refused[0].levelno == logging.INFO
    assert refused[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno > logging.INFO]
    assert "s3cr3t" not in caplog.text


async def test_a_good_request_still_passes(port: int) -> None:
    assert await _status(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") == 200


def _record(level: int, exc: BaseException) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord(PROTOCOL_LOG, level, __file__, 1, "Error from %s", ("::1",), info)


@pytest.mark.parametrize(
    ("level", "exc"),
    [
        pytest.param(logging.ERROR, RuntimeError("a bug"), id="not_a_protocol_error"),
        pytest.param(logging.ERROR, HttpProcessingError(code=500), id="server_status"),
        pytest.param(logging.DEBUG, BadHttpMethod("\x16\x03"), id="already_below_info"),
    ],
)
def test_other_records_pass_unchanged(level: int, exc: BaseException) -> None:
    record = _record(level, exc)
    assert RefusedHeads().filter(record)
    assert record.levelno == level
    assert record.exc_info is not None


def test_the_rewritten_record_names_the_limit_not_the_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, PROTOCOL_LOG)
    dropped = _record(logging.ERROR, LineTooLong(SECRET[:100] + b"...", 8190))
    assert not RefusedHeads().filter(dropped)  # an info line, and info is not logged
    caplog.set_level(logging.INFO, PROTOCOL_LOG)
    record = _record(logging.ERROR, LineTooLong(SECRET[:100] + b"...", 8190))
    assert RefusedHeads().filter(record)
    assert record.levelname == "INFO"
    assert record.__dict__["reason"] == "a line longer than 8190 bytes"
    assert record.__dict__["remote"] == "::1"
    assert "s3cr3t" not in record.getMessage()
