"""The ``store`` fixture, once per back-end: the contract suite runs against each.

- ``sqlite``: a real SQLite file in ``tmp_path``.
- ``mongo-standin``: ``MongoStore`` over the in-process stand-in (``mongo_standin.py``).
- ``mongo-real``: ``MongoStore`` on the server at ``CERTFORGE_TEST_MONGODB_URI``, when that is
  set, in a database of its own that is dropped afterwards.

``backend`` makes more stores on the same data (``backend.make()``), for tests that close a
store and open another, as a restart would.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import pytest
from pymongo import AsyncMongoClient

from server.store.base import Store
from server.store.mongo import MongoStore, default_client
from server.store.sqlite import SQLiteStore
from tests.unit.store.mongo_standin import StandinServer

MONGODB_ENV = "CERTFORGE_TEST_MONGODB_URI"
CONSUMERS = ("webhook", "files")
RUN = uuid.uuid4().hex[:8]  # one name per test run, so runs sharing a server never meet

# Without a server, the real-MongoDB runs are left out rather than skipped one by one;
# test_mongo.py has the one skip that says so.
BACKENDS = ["sqlite", "mongo-standin", *(["mongo-real"] if os.environ.get(MONGODB_ENV) else [])]


def _with_database(uri: str, name: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path="/" + name))


@dataclass
class Backend:
    """Makes unopened stores of one kind, all on the same data; closes what it opened."""

    name: str
    tmp_path: Path
    standin: StandinServer = field(default_factory=StandinServer)
    database: str = field(default_factory=lambda: f"certforge_test_{RUN}_{uuid.uuid4().hex[:8]}")
    opened: list[Store] = field(default_factory=list)

    def make(self, consumers: Sequence[str] = CONSUMERS) -> Store:
        store: Store
        if self.name == "sqlite":
            store = SQLiteStore(f"sqlite:///{self.tmp_path / 'store.db'}", consumers=consumers)
        elif self.name == "mongo-standin":
            store = MongoStore(
                f"mongodb://standin/{self.database}",
                consumers=consumers,
                client_factory=self._standin_client,
            )
        else:
            uri = _with_database(os.environ[MONGODB_ENV], self.database)
            store = MongoStore(uri, consumers=consumers)
        self.opened.append(store)
        return store

    async def opened_store(self, consumers: Sequence[str] = CONSUMERS) -> Store:
        store = self.make(consumers)
        await store.open()
        return store

    def _standin_client(self, url: str) -> AsyncMongoClient[dict[str, Any]]:
        # The stand-in offers the subset of the async API that mongo.py uses.
        return cast("AsyncMongoClient[dict[str, Any]]", self.standin.client(url))

    async def cleanup(self) -> None:
        for store in self.opened:
            await store.close()
        if self.name == "mongo-real":
            client = default_client(os.environ[MONGODB_ENV])
            try:
                await client.drop_database(self.database)
            finally:
                await client.close()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    backend = Backend(request.param, tmp_path)
    try:
        yield backend
    finally:
        await backend.cleanup()


@pytest.fixture
async def store(backend: Backend) -> Store:
    """An open store whose consumers are ``CONSUMERS``; closed by ``backend``."""
    return await backend.opened_store()
