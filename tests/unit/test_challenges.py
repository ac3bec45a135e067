"""One-time challenge passwords: used once, bound to a profile, expiring, never stored."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from server.challenges import CHALLENGE_KIND, Challenges
from server.errors import Malformed
from server.store.sqlite import SQLiteStore
from tests.unit.factories import FakeClock


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}", consumers=[])
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def clock() -> FakeClock:
    # The store judges expiry by the real time, so the fake clock starts there.
    return FakeClock(datetime.now(UTC))


@pytest.fixture
def challenges(store: SQLiteStore, clock: FakeClock) -> Challenges:
    return Challenges(store, clock.now, timedelta(hours=1))


async def test_a_challenge_is_redeemed_once(challenges: Challenges) -> None:
    password, _ = await challenges.create()
    assert await challenges.redeem(password, profile="device")
    assert not await challenges.redeem(password, profile="device")


async def test_password_is_random_url_safe_and_at_least_128_bits(challenges: Challenges) -> None:
    passwords = {(await challenges.create())[0] for _ in range(20)}
    assert len(passwords) == 20
    for p in passwords:
        assert len(p) * 6 >= 128
        assert all(c.isalnum() or c in "-_" for c in p)


async def test_only_the_digest_is_stored(
    challenges: Challenges, store: SQLiteStore, tmp_path: Path
) -> None:
    password, _ = await challenges.create(profile="device")
    doc = await store.get_doc(CHALLENGE_KIND, hashlib.sha256(password.encode()).hexdigest())
    assert doc.data["profile"] == "device"
    assert password not in json.dumps(dict(doc.data))
    with sqlite3.connect(tmp_path / "store.db") as db:
        rows = db.execute("SELECT * FROM documents").fetchall()
    assert password not in repr(rows)


async def test_expiry_comes_from_the_lifetime(challenges: Challenges, clock: FakeClock) -> None:
    _, expires = await challenges.create()
    assert expires == clock.now() + timedelta(hours=1)
    _, expires = await challenges.create(lifetime=timedelta(minutes=5))
    assert expires == clock.now() + timedelta(minutes=5)


async def test_expired_challenge_is_refused(challenges: Challenges, clock: FakeClock) -> None:
    password, _ = await challenges.create(lifetime=timedelta(minutes=5))
    clock.advance(timedelta(minutes=5, seconds=1))
    assert not await challenges.redeem(password, profile="device")


async def test_unknown_password_is_refused(challenges: Challenges) -> None:
    assert not await challenges.redeem("not-a-challenge", profile="device")
    assert not await challenges.redeem("", profile="device")
    assert not await challenges.redeem("x" * 10_000, profile="device")


async def test_wrong_profile_is_refused_without_burning_it(challenges: Challenges) -> None:
    password, _ = await challenges.create(profile="device")
    assert not await challenges.redeem(password, profile="tls-server")
    assert await challenges.redeem(password, profile="device")


async def test_unbound_challenge_fits_any_profile(challenges: Challenges) -> None:
    password, _ = await challenges.create()
    assert await challenges.redeem(password, profile="tls-client")


@pytest.mark.parametrize(
    "lifetime",
    [
        pytest.param(timedelta(0), id="bad_lifetime/zero"),
        pytest.param(timedelta(seconds=-1), id="bad_lifetime/negative"),
        pytest.param(timedelta(days=366), id="bad_lifetime/too_long"),
    ],
)
async def test_bad_lifetime_is_malformed(challenges: Challenges, lifetime: timedelta) -> None:
    with pytest.raises(Malformed):
        await challenges.create(lifetime=lifetime)


async def test_twenty_concurrent_redeemers_exactly_one_wins(challenges: Challenges) -> None:
    password, _ = await challenges.create(profile="device")
    results = await asyncio.gather(
        *(challenges.redeem(password, profile="device") for _ in range(20))
    )
    assert results.count(True) == 1
