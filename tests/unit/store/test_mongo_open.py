"""Opening the MongoDB store when the server cannot be reached: one typed error, whose
message names the host but never the URL's password."""

from __future__ import annotations

import socket

import pytest
from pymongo import AsyncMongoClient

from server.errors import StoreUnavailable
from server.store.mongo import MongoStore


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


async def test_an_unreachable_mongodb_is_store_unavailable() -> None:
    url = f"mongodb://certforge:secretpw@127.0.0.1:{_closed_port()}/certforge"

    def client(u: str) -> AsyncMongoClient[dict[str, object]]:
        return AsyncMongoClient(u, serverSelectionTimeoutMS=300)

    store = MongoStore(url, consumers=[], client_factory=client)
    with pytest.raises(StoreUnavailable, match="cannot open the MongoDB store") as refused:
        await store.open()
    assert "secretpw" not in str(refused.value)
