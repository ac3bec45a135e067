"""The store back-ends, chosen by URL scheme.

``sqlite:///relative/path`` or ``sqlite:////absolute/path`` gives the embedded SQLite store
(the default); ``mongodb://`` and ``mongodb+srv://`` give the MongoDB store, for several
servers sharing one database. Each module is imported only when its scheme is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

from server.store.base import Store


def open_store(url: str, *, consumers: Sequence[str]) -> Store:
    """An unopened store for ``url``; the caller awaits ``open()`` on the serving loop.

    ``consumers`` are the exit modules' names: each event recorded from then on is owed to
    each of them (``pending_events``)."""
    if url.startswith("sqlite:///"):
        from server.store.sqlite import SQLiteStore

        return SQLiteStore(url, consumers=consumers)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from server.store.mongo import MongoStore

        return MongoStore(url, consumers=consumers)
    scheme = url.partition(":")[0] or url
    raise ValueError(f"no store for the URL scheme {scheme!r}: use sqlite:/// or mongodb://")
