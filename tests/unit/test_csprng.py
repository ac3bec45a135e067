"""server.csprng: OpenSSL's CSPRNG behind the ids, serials and secrets of the hot path."""

from __future__ import annotations

import base64

import pytest

from server import csprng
from server.ca.serials import SERIAL_BITS, new_serial
from server.model import new_id


@pytest.mark.parametrize("bits", [1, 7, 8, 9, 64, 159, 160])
def test_randbits_stays_within_its_bits_and_uses_them_all(bits: int) -> None:
    draws = [csprng.randbits(bits) for _ in range(400)]
    assert all(0 <= d < 2**bits for d in draws)
    assert max(draws).bit_length() == bits  # the top bit is reached, so none is lost


def test_tokens_have_the_asked_length_and_differ() -> None:
    assert len(csprng.token_bytes(32)) == 32
    assert len(csprng.token_hex(10)) == 20
    raw = base64.urlsafe_b64decode(csprng.token_urlsafe(18) + "==")
    assert len(raw) == 18
    assert len({csprng.token_hex(16) for _ in range(1000)}) == 1000


def test_serials_are_positive_with_at_least_64_random_bits() -> None:
    serials = [new_serial() for _ in range(1000)]
    assert all(0 < s < 2**SERIAL_BITS for s in serials)
    assert len(set(serials)) == 1000
    assert sum(s.bit_length() >= 64 for s in serials) == 1000


def test_ids_sort_by_time_and_are_unique() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == 1000
    assert ids[0][:12] <= ids[-1][:12]  # the millisecond prefix never goes back
