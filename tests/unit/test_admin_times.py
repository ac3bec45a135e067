"""Times the admin API reads from clients (inventory filters, a revocation's
invalidity_date): each is an aware time in UTC, or the client's Malformed, never an
exception of datetime's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocols.admin.handlers import _time
from protocols.admin.inventory import parse_time
from server.errors import ErrorKind, Malformed

REFUSED = [
    # In range as written, out of it in UTC: OverflowError from astimezone (a 500) before.
    pytest.param("0001-01-01T00:00:00+01:00", id="before_year_1_in_utc"),
    pytest.param("9999-12-31T23:59:59-01:00", id="after_year_9999_in_utc"),
    pytest.param("2026-01-01T00:00:00", id="no_offset"),
    pytest.param("2026-13-01T00:00:00Z", id="no_such_month"),
    pytest.param("soon", id="not_a_time"),
]


@pytest.mark.parametrize("text", REFUSED)
def test_inventory_time_is_refused_as_malformed(text: str) -> None:
    with pytest.raises(Malformed) as err:
        parse_time(text, "issued_after")
    assert err.value.kind is ErrorKind.MALFORMED


@pytest.mark.parametrize("text", REFUSED)
def test_invalidity_date_is_refused_as_malformed(text: str) -> None:
    with pytest.raises(Malformed):
        _time(text, "invalidity_date")


def test_times_at_the_edges_are_read_in_utc() -> None:
    assert parse_time("0001-01-01T00:30:00+00:30", "t") == datetime(1, 1, 1, tzinfo=UTC)
    assert _time("9999-12-31T22:59:59-01:00", "t") == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert _time(None, "t") is None
    with pytest.raises(Malformed):
        _time(20260101, "t")
