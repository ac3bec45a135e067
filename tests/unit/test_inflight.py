"""``server.web.inflight``: the store closes after the last request, and later ones are
refused."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.keys import IN_FLIGHT
from server.web.inflight import InFlight
from server.web.middleware import last_resort, request_log


async def test_drain_waits_for_the_requests_in_flight_then_refuses_new_ones() -> None:
    in_flight = InFlight()
    assert in_flight.enter()
    drained = asyncio.ensure_future(in_flight.drain(5))
    await asyncio.sleep(0.05)
    assert not drained.done()
    assert in_flight.enter()  # a late request (a TLS handshake finished after the stop)
    in_flight.leave()
    await asyncio.sleep(0.05)
    assert not drained.done()  # the first is still in flight
    in_flight.leave()
    await asyncio.wait_for(drained, 1)
    assert not in_flight.enter()


async def test_a_request_entering_as_the_count_reaches_zero_is_waited_for() -> None:
    in_flight = InFlight()
    assert in_flight.enter()
    drained = asyncio.ensure_future(in_flight.drain(5))
    await asyncio.sleep(0)
    in_flight.leave()  # the event is set; before drain resumes, another request comes in
    assert in_flight.enter()
    await asyncio.sleep(0.05)
    assert not drained.done()
    in_flight.leave()
    await asyncio.wait_for(drained, 1)
    assert in_flight.closed


async def test_drain_gives_up_after_its_time() -> None:
    in_flight = InFlight()
    assert in_flight.enter()
    await asyncio.wait_for(in_flight.drain(0.1), 1)
    assert in_flight.closed and not in_flight.enter()


async def test_a_request_after_the_drain_gets_503_with_retry_after() -> None:
    """Through the real middleware: counted in and out while open, refused once drained."""
    in_flight = InFlight()
    app = web.Application(middlewares=[request_log, last_resort])
    app[IN_FLIGHT] = in_flight

    async def hello(request: web.Request) -> web.Response:
        assert in_flight.count == 1
        return web.Response(text="hello")

    app.router.add_get("/", hello)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/")
        assert (resp.status, await resp.text(), in_flight.count) == (200, "hello", 0)
        await in_flight.drain(1)
        resp = await client.get("/")
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert resp.content_type == "application/problem+json"
        assert (await resp.json())["status"] == 503
        assert in_flight.count == 0
