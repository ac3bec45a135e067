"""An in-process stand-in for a MongoDB deployment, for the store's contract suite.

No MongoDB server can be installed where the unit tests run, so this wraps ``mongomock``
(synchronous, untyped) in the subset of PyMongo's asyncio API that ``server/store/mongo.py``
uses: ``AsyncMongoClient``, ``AsyncDatabase``, ``AsyncCollection`` and ``AsyncCursor``, with
the same async signatures. ``mongo.py`` must keep to ordinary, documented PyMongo calls, so
that a call this module does not offer fails here rather than only against a real server.

Every operation first yields to the event loop, as a real round trip does, and then runs
whole. That gives MongoDB's guarantees, no more: each single-document write is atomic, and
concurrent callers interleave between operations (which the race tests rely on). mongomock
enforces unique indexes made with ``create_index(unique=True)``, and raises PyMongo's own
``DuplicateKeyError``.

``StandinServer`` is the deployment: clients made from it share its data, so a test can close
a store and open another on the same data, as after a restart. ``fail_next`` makes the next
matching operation raise, to simulate a crash between two writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import mongomock
from pymongo.errors import AutoReconnect, ConfigurationError, InvalidOperation

Doc = dict[str, Any]
SortSpec = str | Sequence[tuple[str, int]]


@dataclass
class StandinServer:
    """One in-memory deployment, shared by every client made from it."""

    _sync: Any = field(default_factory=lambda: mongomock.MongoClient(tz_aware=True))
    _faults: list[tuple[str, str]] = field(default_factory=list)
    clients: int = 0  # how many clients were made: a store makes its own in open()

    def client(self, url: str) -> StandinClient:
        self.clients += 1
        return StandinClient(self, url)

    def fail_next(self, collection: str, operation: str) -> None:
        """The next ``operation`` ("insert_one"...) on ``collection`` raises AutoReconnect,
        as if the connection (or the server) went away before the write."""
        self._faults.append((collection, operation))

    def check_fault(self, collection: str, operation: str) -> None:
        if (collection, operation) in self._faults:
            self._faults.remove((collection, operation))
            raise AutoReconnect(f"stand-in: injected failure of {operation} on {collection}")

    def raw(self, database: str, collection: str) -> Any:
        """The synchronous mongomock collection, for assertions on the stored layout."""
        return self._sync[database][collection]


class StandinClient:
    """``AsyncMongoClient``: made in the store's ``open()``, closed in its ``close()``."""

    def __init__(self, server: StandinServer, url: str) -> None:
        self._server = server
        self._default = urlsplit(url).path.lstrip("/") or None
        self.closed = False

    def get_default_database(self, default: str | None = None) -> StandinDatabase:
        name = self._default or default
        if name is None:
            raise ConfigurationError("no default database name defined or provided")
        return self[name]

    def __getitem__(self, name: str) -> StandinDatabase:
        return StandinDatabase(self, name)

    async def drop_database(self, name: str) -> None:
        await asyncio.sleep(0)
        self._server._sync.drop_database(name)

    async def close(self) -> None:
        await asyncio.sleep(0)
        self.closed = True


class StandinDatabase:
    def __init__(self, client: StandinClient, name: str) -> None:
        self._client = client
        self.name = name

    def __getitem__(self, name: str) -> StandinCollection:
        return StandinCollection(self._client, self.name, name)


class StandinCollection:
    def __init__(self, client: StandinClient, database: str, name: str) -> None:
        self._client = client
        self._server = client._server
        self._database = database
        self.name = name

    async def _sync(self, operation: str) -> Any:
        """The mongomock collection, after a yield to the loop (one "round trip")."""
        await asyncio.sleep(0)
        if self._client.closed:
            raise InvalidOperation("Cannot use AsyncMongoClient after close")
        self._server.check_fault(self.name, operation)
        return self._server.raw(self._database, self.name)

    async def create_index(self, keys: SortSpec, **kwargs: Any) -> str:
        name: str = (await self._sync("create_index")).create_index(keys, **kwargs)
        return name

    async def index_information(self) -> dict[str, Any]:
        info: dict[str, Any] = (await self._sync("index_information")).index_information()
        return info

    async def drop_index(self, name: str) -> None:
        (await self._sync("drop_index")).drop_index(name)

    def find(
        self, filter: Mapping[str, Any] | None = None, projection: Mapping[str, Any] | None = None
    ) -> StandinCursor:
        return StandinCursor(self, dict(filter or {}), projection)

    async def find_one(
        self, filter: Mapping[str, Any], projection: Mapping[str, Any] | None = None
    ) -> Doc | None:
        found: Doc | None = (await self._sync("find_one")).find_one(filter, projection)
        return found

    async def insert_one(self, document: Doc) -> Any:
        return (await self._sync("insert_one")).insert_one(document)

    async def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any]) -> Any:
        return (await self._sync("update_one")).update_one(filter, update)

    async def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        projection: Mapping[str, Any] | None = None,
        *,
        return_document: bool = False,
    ) -> Doc | None:
        sync = await self._sync("find_one_and_update")
        found: Doc | None = sync.find_one_and_update(
            filter, update, projection=projection, return_document=return_document
        )
        return found

    async def find_one_and_delete(
        self, filter: Mapping[str, Any], projection: Mapping[str, Any] | None = None
    ) -> Doc | None:
        found: Doc | None = (await self._sync("find_one_and_delete")).find_one_and_delete(
            filter, projection
        )
        return found

    async def delete_one(self, filter: Mapping[str, Any]) -> Any:
        return (await self._sync("delete_one")).delete_one(filter)

    async def delete_many(self, filter: Mapping[str, Any]) -> Any:
        return (await self._sync("delete_many")).delete_many(filter)

    async def count_documents(self, filter: Mapping[str, Any]) -> int:
        return int((await self._sync("count_documents")).count_documents(filter))

    async def aggregate(self, pipeline: Sequence[Mapping[str, Any]]) -> StandinResults:
        """As PyMongo's: awaited, it gives a cursor over the results."""
        return StandinResults(list((await self._sync("aggregate")).aggregate(list(pipeline))))


@dataclass
class StandinResults:
    """``AsyncCommandCursor`` (what ``aggregate`` gives): already run, read by ``to_list``."""

    docs: list[Doc]

    async def to_list(self, length: int | None = None) -> list[Doc]:
        if length == 0:
            raise ValueError("to_list() length must be greater than 0")
        return self.docs if length is None else self.docs[:length]


class StandinCursor:
    """``AsyncCursor``: built synchronously by ``find``, run by ``to_list``."""

    def __init__(
        self, collection: StandinCollection, filter: Doc, projection: Mapping[str, Any] | None
    ) -> None:
        self._collection = collection
        self._filter = filter
        self._projection = projection
        self._sort: list[tuple[str, int]] = []
        self._skip = 0
        self._limit = 0

    def sort(self, key_or_list: SortSpec, direction: int | None = None) -> StandinCursor:
        if isinstance(key_or_list, str):
            self._sort = [(key_or_list, 1 if direction is None else direction)]
        else:
            self._sort = list(key_or_list)
        return self

    def skip(self, skip: int) -> StandinCursor:
        self._skip = skip
        return self

    def limit(self, limit: int) -> StandinCursor:
        self._limit = limit
        return self

    async def to_list(self, length: int | None = None) -> list[Doc]:
        if length == 0:  # as in PyMongo 4.x: to_list(0) is an error, use to_list(None)
            raise ValueError("to_list() length must be greater than 0")
        cursor = (await self._collection._sync("find")).find(self._filter, self._projection)
        if self._sort:
            cursor = cursor.sort(self._sort)
        docs: list[Doc] = list(cursor.skip(self._skip).limit(self._limit))
        return docs if length is None else docs[:length]
