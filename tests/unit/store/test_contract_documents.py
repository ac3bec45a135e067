"""The store contract, continued: protocol documents (tokens, nonces, ACME accounts...).

Expiry is checked against the wall clock (the contract says "unexpired" with no clock), so
these tests use documents that expired an hour ago or expire in an hour.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.errors import Conflict, NotFound
from server.model import Document
from server.store.base import Store

RACERS = 20


def _doc(doc_id: str = "d1", **overrides: Any) -> Document:
    return replace(Document("nonce", doc_id, {"n": 1, "nested": {"list": [1, "two"]}}), **overrides)


def _in(hours: float) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


async def test_put_then_get(store: Store) -> None:
    expires = _in(1)
    doc = _doc(lookup="acct-key", expires_at=expires)

    assert await store.put_doc(doc) == doc

    got = await store.get_doc("nonce", "d1")
    assert (got.data, got.version, got.lookup) == (doc.data, 1, "acct-key")
    assert got.expires_at is not None
    assert got.expires_at.utcoffset() == timedelta(0)
    assert abs(got.expires_at - expires) < timedelta(milliseconds=1)


async def test_documents_are_keyed_by_kind_and_id(store: Store) -> None:
    await store.put_doc(_doc(kind="nonce", data={"k": "nonce"}))
    await store.put_doc(_doc(kind="token", data={"k": "token"}))

    assert (await store.get_doc("token", "d1")).data == {"k": "token"}
    with pytest.raises(NotFound):
        await store.get_doc("account", "d1")


async def test_putting_an_existing_document_conflicts(store: Store) -> None:
    await store.put_doc(_doc(data={"first": True}))

    with pytest.raises(Conflict):
        await store.put_doc(_doc(data={"first": False}))
    assert (await store.get_doc("nonce", "d1")).data == {"first": True}


async def test_a_write_not_waiting_for_the_disk_is_as_atomic(store: Store) -> None:
    # Concurrent markers of one id (ACME nonce uses): exactly one is written.
    results = await asyncio.gather(
        *(store.put_doc(_doc(data={"n": i}), durable=False) for i in range(10)),
        return_exceptions=True,
    )

    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))
    assert (await store.get_doc("nonce", "d1")).data in [{"n": i} for i in range(10)]


async def test_find_by_lookup(store: Store) -> None:
    await store.put_doc(_doc("b", lookup="key-1"))
    await store.put_doc(_doc("a", lookup="key-1"))
    await store.put_doc(_doc("c", lookup="key-2"))
    await store.put_doc(_doc("d", kind="token", lookup="key-1"))

    found = await store.find_docs("nonce", lookup="key-1")

    assert [d.id for d in found] == ["a", "b"]


async def test_update_with_the_current_version(store: Store) -> None:
    await store.put_doc(_doc(lookup="old"))

    updated = await store.update_doc(_doc(data={"n": 2}, lookup="new"), expect_version=1)

    assert updated.version == 2
    got = await store.get_doc("nonce", "d1")
    assert (got.version, got.data, got.lookup) == (2, {"n": 2}, "new")
    assert await store.find_docs("nonce", lookup="old") == []


async def test_update_with_a_stale_version_conflicts(store: Store) -> None:
    await store.put_doc(_doc())
    await store.update_doc(_doc(data={"n": 2}), expect_version=1)

    with pytest.raises(Conflict):
        await store.update_doc(_doc(data={"n": 3}), expect_version=1)
    assert (await store.get_doc("nonce", "d1")).data == {"n": 2}


async def test_update_of_a_missing_document_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.update_doc(_doc(), expect_version=1)


async def test_concurrent_updates_exactly_one_wins(store: Store) -> None:
    await store.put_doc(_doc())

    results = await asyncio.gather(
        *(store.update_doc(_doc(data={"n": n}), expect_version=1) for n in range(RACERS)),
        return_exceptions=True,
    )

    assert sum(1 for r in results if isinstance(r, Document)) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, Document))


async def test_take_returns_once_then_not_found(store: Store) -> None:
    await store.put_doc(_doc(data={"secret": "s"}))

    assert (await store.take_doc("nonce", "d1")).data == {"secret": "s"}
    with pytest.raises(NotFound):
        await store.take_doc("nonce", "d1")
    with pytest.raises(NotFound):
        await store.get_doc("nonce", "d1")


async def test_concurrent_takers_exactly_one_gets_it(store: Store) -> None:
    await store.put_doc(_doc())

    results = await asyncio.gather(
        *(store.take_doc("nonce", "d1") for _ in range(RACERS)), return_exceptions=True
    )

    assert sum(1 for r in results if isinstance(r, Document)) == 1
    assert all(isinstance(r, NotFound) for r in results if not isinstance(r, Document))


async def test_an_expired_document_is_invisible(store: Store) -> None:
    await store.put_doc(_doc(lookup="k", expires_at=_in(-1)))

    with pytest.raises(NotFound):
        await store.get_doc("nonce", "d1")
    assert await store.find_docs("nonce", lookup="k") == []
    with pytest.raises(NotFound):
        await store.take_doc("nonce", "d1")
    with pytest.raises(NotFound):
        await store.update_doc(_doc(expires_at=_in(1)), expect_version=1)


async def test_an_expired_document_can_be_put_again(store: Store) -> None:
    await store.put_doc(_doc(data={"old": True}, expires_at=_in(-1)))

    await store.put_doc(_doc(data={"old": False}, expires_at=_in(1)))

    assert (await store.get_doc("nonce", "d1")).data == {"old": False}


async def test_purge_deletes_only_what_expired_by_then(store: Store) -> None:
    await store.put_doc(_doc("gone", expires_at=_in(-2)))
    await store.put_doc(_doc("also-gone", expires_at=_in(-1)))
    await store.put_doc(_doc("soon", expires_at=_in(1)))
    await store.put_doc(_doc("forever"))

    purged = await store.purge_expired_docs(datetime.now(UTC))

    assert purged in (0, 2)  # a lazy TTL index may have deleted them first (MongoDB)
    assert (await store.get_doc("nonce", "soon")).id == "soon"
    assert await store.purge_expired_docs(_in(2)) == 1
    assert (await store.get_doc("nonce", "forever")).id == "forever"
    with pytest.raises(NotFound):
        await store.get_doc("nonce", "soon")


async def test_purge_deletes_a_backlog_larger_than_one_batch(store: Store) -> None:
    """SQLite deletes in batches (sqlite_docs.PURGE_BATCH); all of a backlog goes in one call."""
    await asyncio.gather(*(store.put_doc(_doc(f"old{i}", expires_at=_in(-1))) for i in range(2500)))
    await store.put_doc(_doc("kept", expires_at=_in(1)))

    purged = await store.purge_expired_docs(datetime.now(UTC))

    assert purged in (0, 2500)  # a lazy TTL index may have deleted them first (MongoDB)
    assert await store.purge_expired_docs(datetime.now(UTC)) == 0
    assert (await store.get_doc("nonce", "kept")).id == "kept"


async def test_list_pages_through_one_kind_in_id_order(store: Store) -> None:
    for doc_id in ("c", "a", "e", "b", "d"):
        await store.put_doc(_doc(doc_id, kind="token", data={"id": doc_id}))
    await store.put_doc(_doc("aa", kind="nonce"))  # another kind: never listed

    first = await store.list_docs("token", limit=2)
    second = await store.list_docs("token", after=first[-1].id, limit=2)
    rest = await store.list_docs("token", after=second[-1].id, limit=2)

    assert [d.id for d in first + second + rest] == ["a", "b", "c", "d", "e"]
    assert await store.list_docs("token", after="e") == []
    assert [d.data for d in first] == [{"id": "a"}, {"id": "b"}]


async def test_list_leaves_out_expired_documents(store: Store) -> None:
    await store.put_doc(_doc("old", kind="token", expires_at=_in(-1)))
    await store.put_doc(_doc("live", kind="token", expires_at=_in(1)))
    await store.put_doc(_doc("forever", kind="token"))

    assert [d.id for d in await store.list_docs("token")] == ["forever", "live"]


async def test_list_shows_the_current_version(store: Store) -> None:
    await store.put_doc(_doc("t1", kind="token", data={"revoked": False}))
    await store.update_doc(_doc("t1", kind="token", data={"revoked": True}), expect_version=1)

    (listed,) = await store.list_docs("token")
    assert (listed.version, listed.data) == (2, {"revoked": True})
