"""Bearer tokens: created once, listed without secrets, revoked, expiring, rotated; and a
revocation seen by another process's ``TokenService`` once its view is ``fresh_seconds`` old.

Two services on two stores opened on one SQLite file stand for two workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.errors import Conflict, Malformed, NotFound, Unauthorized
from server.model import Role
from server.store.sqlite import SQLiteStore
from server.tokens import (
    BOOTSTRAP_NAME,
    TOKEN_KIND,
    TokenService,
    TokenState,
    parse_duration,
)
from tests.unit.factories import FakeClock

ADMIN = frozenset({Role.ADMINISTRATOR})


@dataclass
class FakeMonotonic:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[SQLiteStore, SQLiteStore]]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    first, second = SQLiteStore(url, consumers=[]), SQLiteStore(url, consumers=[])
    await first.open()
    await second.open()
    yield first, second
    await second.close()
    await first.close()


@pytest.fixture
def tokens(
    stores: tuple[SQLiteStore, SQLiteStore], clock: FakeClock, monotonic: FakeMonotonic
) -> TokenService:
    return TokenService(stores[0], clock, monotonic=monotonic)


@pytest.fixture
def other_worker(
    stores: tuple[SQLiteStore, SQLiteStore], clock: FakeClock, monotonic: FakeMonotonic
) -> TokenService:
    return TokenService(stores[1], clock, monotonic=monotonic)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("90m", 5400), ("12h", 43200), ("30d", 2592000), (" 1d ", 86400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("30", id="no_unit"),
        pytest.param("d", id="no_number"),
        pytest.param("0d", id="zero"),
        pytest.param("-1d", id="negative"),
        pytest.param("1.5h", id="fraction"),
        pytest.param("3w", id="unknown_unit"),
        pytest.param("99999d", id="beyond_ten_years"),
    ],
)
def test_malformed_durations(text: str) -> None:
    with pytest.raises(Malformed):
        parse_duration(text)


async def test_the_store_keeps_only_the_digest(
    tokens: TokenService, stores: tuple[SQLiteStore, SQLiteStore]
) -> None:
    info, secret = await tokens.create("ci", {Role.REQUESTER})

    (doc,) = await stores[0].list_docs(TOKEN_KIND)
    assert secret not in repr(doc)
    assert doc.id.startswith(info.id)
    assert (await tokens.authenticate(secret)).roles == {Role.REQUESTER}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * 101, id="too_long"),
        pytest.param("two words", id="space"),
        pytest.param("-leading", id="leading_dash"),
    ],
)
async def test_bad_names_are_refused(tokens: TokenService, name: str) -> None:
    with pytest.raises(Malformed):
        await tokens.create(name, {Role.AUDITOR})
    assert await tokens.list_tokens() == []


async def test_no_role_is_refused(tokens: TokenService) -> None:
    with pytest.raises(Malformed):
        await tokens.create("nobody", set())


async def test_list_shows_every_token_oldest_first(tokens: TokenService, clock: FakeClock) -> None:
    first, _ = await tokens.create("a", {Role.AUDITOR})
    clock.advance(timedelta(seconds=1))
    second, _ = await tokens.create("b", {Role.OPERATOR}, lifetime=timedelta(hours=1))
    await tokens.revoke(first.id)

    listed = await tokens.list_tokens()

    assert [t.id for t in listed] == [first.id, second.id]
    assert [t.state(clock.now()) for t in listed] == [TokenState.REVOKED, TokenState.ACTIVE]
    assert listed[1].expires_at == clock.now() + timedelta(hours=1)


async def test_revoked_is_refused_at_once_by_the_process_that_revoked(
    tokens: TokenService,
) -> None:
    info, secret = await tokens.create("ci", {Role.REQUESTER})
    await tokens.authenticate(secret)  # cached

    await tokens.revoke(info.id)

    with pytest.raises(Unauthorized, match="revoked"):
        await tokens.authenticate(secret)


async def test_another_process_refuses_a_revoked_token_once_its_view_is_stale(
    tokens: TokenService, other_worker: TokenService, monotonic: FakeMonotonic
) -> None:
    info, secret = await tokens.create("ci", {Role.REQUESTER})
    await other_worker.authenticate(secret)  # the other worker's cached view

    await tokens.revoke(info.id)
    monotonic.now += 0.4
    await other_worker.authenticate(secret)  # within FRESH_SECONDS: still its cached view
    monotonic.now += 0.1

    with pytest.raises(Unauthorized, match="revoked"):
        await other_worker.authenticate(secret)


async def test_an_expired_token_is_refused_even_while_cached(
    tokens: TokenService, clock: FakeClock
) -> None:
    _, secret = await tokens.create("short", {Role.AUDITOR}, lifetime=timedelta(seconds=5))
    await tokens.authenticate(secret)

    clock.advance(timedelta(seconds=5))

    with pytest.raises(Unauthorized, match="expired"):
        await tokens.authenticate(secret)


async def test_an_unknown_token_is_refused(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized, match="not valid"):
        await tokens.authenticate("cft_nothing")


async def test_revoke_by_name(tokens: TokenService) -> None:
    info, secret = await tokens.create("ci", {Role.REQUESTER})

    assert (await tokens.revoke("ci")).id == info.id
    with pytest.raises(Unauthorized):
        await tokens.authenticate(secret)


async def test_revoking_an_unknown_token_is_not_found(tokens: TokenService) -> None:
    await tokens.create("ci", {Role.REQUESTER})
    with pytest.raises(NotFound):
        await tokens.revoke("nope")
    assert [t.revoked_at for t in await tokens.list_tokens()] == [None]


async def test_revoking_twice_conflicts_and_keeps_the_first_time(
    tokens: TokenService, clock: FakeClock
) -> None:
    info, _ = await tokens.create("ci", {Role.REQUESTER})
    first = await tokens.revoke(info.id)
    clock.advance(timedelta(minutes=1))

    with pytest.raises(Conflict):
        await tokens.revoke(info.id)
    with pytest.raises(NotFound):  # by name, only active tokens count
        await tokens.revoke("ci")
    assert (await tokens.list_tokens())[0].revoked_at == first.revoked_at


async def test_a_name_shared_by_active_tokens_revokes_only_by_id(tokens: TokenService) -> None:
    one, _ = await tokens.create("ci", {Role.REQUESTER})
    two, second_secret = await tokens.create("ci", {Role.REQUESTER})
    assert one.id != two.id

    with pytest.raises(Conflict, match=one.id):
        await tokens.revoke("ci")
    await tokens.revoke(one.id)

    assert (await tokens.authenticate(second_secret)).identity == "ci"
    assert (await tokens.revoke("ci")).id == two.id  # the one active token of that name


async def test_last_use_is_written_in_the_background_at_most_once_a_period(
    tokens: TokenService, clock: FakeClock, monotonic: FakeMonotonic
) -> None:
    info, secret = await tokens.create("busy", {Role.REQUESTER})
    await tokens.authenticate(secret)
    first_use = clock.now()
    assert (await tokens.list_tokens())[0].last_used_at is None  # nothing written on the way

    await tokens.record_last_used()
    clock.advance(timedelta(seconds=10))
    monotonic.now += 10
    await tokens.authenticate(secret)
    await tokens.record_last_used()  # 10 s after the last write: waits
    assert (await tokens.list_tokens())[0].last_used_at == first_use

    clock.advance(timedelta(seconds=60))
    monotonic.now += 60
    await tokens.record_last_used()  # the use noted 60 s ago, written now

    assert (await tokens.list_tokens())[0].last_used_at == first_use + timedelta(seconds=10)
    assert (await tokens.list_tokens())[0].id == info.id


async def test_a_last_use_never_undoes_a_revocation(
    tokens: TokenService, other_worker: TokenService
) -> None:
    info, secret = await tokens.create("ci", {Role.REQUESTER})
    await other_worker.authenticate(secret)
    await tokens.revoke(info.id)

    await other_worker.record_last_used()

    (listed,) = await tokens.list_tokens()
    assert listed.revoked_at is not None
    assert listed.last_used_at is not None


async def test_bootstrap_rotation(tokens: TokenService, tmp_path: Path) -> None:
    await tokens.bootstrap(tmp_path)
    old = (tmp_path / "admin.token").read_text().strip()
    await tokens.authenticate(old)

    new, revoked = await tokens.rotate_bootstrap(tmp_path)

    path = tmp_path / "admin.token"
    secret = path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    assert secret != old
    assert (await tokens.authenticate(secret)).roles == ADMIN
    with pytest.raises(Unauthorized, match="revoked"):
        await tokens.authenticate(old)
    assert revoked is not None
    assert revoked.name == new.name == BOOTSTRAP_NAME
    await tokens.bootstrap(tmp_path)  # a restart keeps the new token
    assert (tmp_path / "admin.token").read_text().strip() == secret
