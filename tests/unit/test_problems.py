"""Each protocol's error table covers every ErrorKind (the drift step-ca suffered)."""

from __future__ import annotations

from protocols.rest.problems import PROBLEMS
from server.errors import ErrorKind


def test_rest_problem_table_covers_every_kind() -> None:
    assert set(PROBLEMS) == set(ErrorKind)
    assert all(400 <= status < 600 for status in PROBLEMS.values())


def test_acme_problem_table_covers_every_kind() -> None:
    from protocols.acme.problems import PROBLEMS as ACME_PROBLEMS

    assert set(ACME_PROBLEMS) == set(ErrorKind)
    assert all(400 <= status < 600 for _, status in ACME_PROBLEMS.values())
