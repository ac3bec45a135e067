"""One-time CMP secrets: sealed at rest, used once, expiring, bound to a profile."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from protocols.cmp.secrets import SECRET_KIND, OneTimeSecrets
from tests.unit.factories import FakeClock, make_engine


async def test_secret_life(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC))  # the store expires documents by the real time
    _, store = await make_engine(tmp_path, clock=clock)
    key = os.urandom(32)
    secrets = OneTimeSecrets(store, clock.now, master_key=key, default_lifetime=timedelta(hours=1))
    reference, secret, _ = await secrets.create(profile="device")
    ref = reference.encode()
    found = await secrets.secret_for(ref)
    assert found is not None and found.secret == secret.encode() and found.profile == "device"
    # Sealed at rest: the store holds no secret in clear.
    doc = await store.get_doc(SECRET_KIND, reference)
    assert secret not in str(doc.data)
    # Another master key opens nothing.
    other = OneTimeSecrets(
        store, clock.now, master_key=os.urandom(32), default_lifetime=timedelta(1)
    )
    assert await other.secret_for(ref) is None
    # Reading does not use it up; using does, once.
    assert await secrets.secret_for(ref) is not None
    assert await secrets.use_secret(ref) is True
    assert await secrets.use_secret(ref) is False
    assert await secrets.secret_for(ref) is None
    await store.close()


async def test_expired_and_unknown(tmp_path: Path) -> None:
    clock = FakeClock(datetime.now(UTC))  # the store expires documents by the real time
    _, store = await make_engine(tmp_path, clock=clock)
    secrets = OneTimeSecrets(
        store, clock.now, master_key=os.urandom(32), default_lifetime=timedelta(minutes=5)
    )
    reference, _, _ = await secrets.create()
    assert await secrets.secret_for(b"unknown") is None
    assert await secrets.secret_for(b"\xff" * 8) is None
    clock.advance(timedelta(minutes=6))
    assert await secrets.secret_for(reference.encode()) is None
    assert await secrets.use_secret(reference.encode()) is False
    await store.close()
