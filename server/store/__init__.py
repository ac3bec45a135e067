"""The store back-ends, chosen by URL scheme."""

from __future__ import annotations

from collections.abc import Sequence

from server.store.base import Store


def open_store(url: str, *, consumers: Sequence[str]) -> Store:
    """An unopened store for ``url`` (``sqlite:///PATH`` or ``mongodb://``); await ``open()``."""
    if url.startswith("sqlite:///"):
        from server.store.sqlite import SQLiteStore

        return SQLiteStore(url, consumers=consumers)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from server.store.mongo import MongoStore

        store: Store = MongoStore(url, consumers=consumers)
        return store
    raise ValueError(f"no store for {url!r}")
