"""Serial numbers: RFC 5280 §4.1.2.2 and CA/Browser Forum BR §7.1."""

from __future__ import annotations

from server.ca.serials import new_serial


def test_serials_are_positive_and_fit_in_twenty_octets() -> None:
    serials = [new_serial() for _ in range(2000)]
    assert all(0 < s < 2**159 for s in serials)
    assert all((s.bit_length() + 8) // 8 <= 20 for s in serials)  # DER adds a sign bit


def test_serials_carry_at_least_64_random_bits() -> None:
    serials = {new_serial() for _ in range(2000)}
    assert len(serials) == 2000
    # With 159 random bits nearly all draws are long; 64 bits would already be enough.
    assert sum(s.bit_length() > 64 for s in serials) == 2000
