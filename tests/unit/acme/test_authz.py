"""A validation ends its challenge whatever fails in it (``authz.validate``): a failure the
validator did not foresee is recorded as the challenge's error, never left processing."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from protocols.acme.authz import new_authorization, validate
from protocols.acme.context import ACME, Background, URLs
from protocols.acme.records import AuthzStatus, ChallengeStatus, save
from protocols.acme.validation import Validator
from server.config import Config
from server.model import Identifier, IdentifierType
from tests.unit.factories import FakeClock, make_engine

NAME = Identifier(IdentifierType.DNS, "www.example.test")


async def _acme(tmp_path: Path) -> ACME:
    clock = FakeClock(datetime.now(UTC))  # the store expires documents by the wall clock
    engine, store = await make_engine(tmp_path, clock=clock)
    return ACME(
        config=Config(),
        store=store,
        engine=engine,
        clock=clock,
        urls=URLs("https://ca.example/acme"),
        background=Background(),
    )


@pytest.mark.parametrize(
    ("raised", "problem", "level"),
    [
        pytest.param(ValueError("Invalid URL"), "connection", logging.WARNING, id="value_error"),
        pytest.param(OSError("unreachable"), "connection", logging.WARNING, id="os_error"),
        pytest.param(KeyError("bug"), "serverInternal", logging.ERROR, id="our_bug"),
    ],
)
async def test_an_unforeseen_failure_makes_the_challenge_invalid(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    raised: Exception,
    problem: str,
    level: int,
) -> None:
    acme = await _acme(tmp_path)
    authz = new_authorization(
        "acct-1", NAME, wildcard=False, expires=acme.clock.now() + timedelta(hours=1)
    )
    await acme.store.put_doc(authz.to_doc())
    challenge = authz.challenges[0]
    challenge.status = ChallengeStatus.PROCESSING
    await save(acme.store, authz)

    async def fails(*args: Any) -> None:
        raise raised

    monkeypatch.setattr(Validator, "http01", fails)
    with caplog.at_level(logging.INFO, logger="certforge.acme"):
        recorded = await validate(acme, authz.id, NAME, False, challenge, "ka")
    await acme.background.close()
    assert recorded is not None
    assert recorded.status is AuthzStatus.INVALID
    done = recorded.challenge(challenge.type)
    assert done is not None and done.status is ChallengeStatus.INVALID
    assert done.error is not None and done.error["type"].endswith(f":{problem}")
    failures = [r for r in caplog.records if r.message.startswith("validation failed")]
    assert [r.levelno for r in failures] == [level]
    assert (failures[0].exc_info is not None) == (level == logging.ERROR)
    await acme.store.close()
