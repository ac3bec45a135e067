"""Public-key checks: every key kind refused names its defect in the test id."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from server.ca.goodkey import SMALL_PRIMES_PRODUCT, check_public_key, fermat_factor, key_type_of
from server.errors import BadPublicKey
from tests.unit.ca.helpers import rsa_key


def is_probable_prime(n: int, rounds: int = 20) -> bool:
    """Miller-Rabin, for building moduli with chosen weaknesses."""
    if math.gcd(n, SMALL_PRIMES_PRODUCT) != 1:  # cheap trial division first
        return False
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def next_prime(n: int) -> int:
    n |= 1
    while not is_probable_prime(n):
        n += 2
    return n


def modulus_of_bits(bits: int) -> int:
    return secrets.randbits(bits) | (1 << (bits - 1)) | 1


def rsa_public(n: int, e: int = 65537) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(e, n).public_key()


@cache
def fermat_close_modulus() -> int:
    """n = pq with q the next prime a little above p: Fermat's method factors it at once."""
    p = rsa_key().private_numbers().p
    return p * next_prime(p + 2**20)


def small_factor_modulus() -> int:
    while True:
        n = 9973 * modulus_of_bits(2035)
        if n.bit_length() == 2048:
            return n


class EvenExponentKey(rsa.RSAPublicKey):
    """cryptography refuses to build an RSA key with an even exponent, so fake one."""

    def __init__(self) -> None:
        self._numbers = rsa.RSAPublicNumbers(65536, rsa_key().public_key().public_numbers().n)

    def public_numbers(self) -> rsa.RSAPublicNumbers:
        return self._numbers

    @property
    def key_size(self) -> int:
        return self._numbers.n.bit_length()

    def encrypt(self, *args: Any) -> bytes:
        raise NotImplementedError

    def verify(self, *args: Any) -> None:
        raise NotImplementedError

    def recover_data_from_signature(self, *args: Any) -> bytes:
        raise NotImplementedError

    def public_bytes(self, *args: Any) -> bytes:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __copy__(self) -> EvenExponentKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> EvenExponentKey:
        return self


KeyFactory = Callable[[], PublicKeyTypes]

GOOD_KEYS = [
    pytest.param(
        lambda: ec.generate_private_key(ec.SECP256R1()).public_key(), "ec-p256", id="ok/ec_p256"
    ),
    pytest.param(
        lambda: ec.generate_private_key(ec.SECP384R1()).public_key(), "ec-p384", id="ok/ec_p384"
    ),
    pytest.param(
        lambda: ec.generate_private_key(ec.SECP521R1()).public_key(), "ec-p521", id="ok/ec_p521"
    ),
    pytest.param(lambda: rsa_key().public_key(), "rsa-2048", id="ok/rsa_2048"),
    pytest.param(
        lambda: ed25519.Ed25519PrivateKey.generate().public_key(), "ed25519", id="ok/ed25519"
    ),
]

BAD_KEYS = [
    pytest.param(lambda: rsa_key(1024).public_key(), id="bad_key/rsa_1024_bits"),
    pytest.param(lambda: rsa_public(modulus_of_bits(8200)), id="bad_key/rsa_over_8192_bits"),
    pytest.param(lambda: rsa_public(modulus_of_bits(2052)), id="bad_key/rsa_bits_not_octets"),
    pytest.param(lambda: rsa_key(2048, exponent=3).public_key(), id="bad_key/rsa_exponent_3"),
    pytest.param(EvenExponentKey, id="bad_key/rsa_even_exponent"),
    pytest.param(
        lambda: rsa_public(rsa_key().public_key().public_numbers().n, 2**256 + 1),
        id="bad_key/rsa_exponent_over_2_256",
    ),
    pytest.param(lambda: rsa_public(small_factor_modulus()), id="bad_key/rsa_small_factor"),
    pytest.param(lambda: rsa_public(fermat_close_modulus()), id="bad_key/rsa_fermat_close_primes"),
    pytest.param(
        lambda: ec.generate_private_key(ec.SECP224R1()).public_key(), id="bad_key/ec_p224"
    ),
    pytest.param(
        lambda: ec.generate_private_key(ec.SECP256K1()).public_key(), id="bad_key/ec_secp256k1"
    ),
    pytest.param(
        lambda: ec.generate_private_key(ec.BrainpoolP256R1()).public_key(),
        id="bad_key/ec_brainpool",
    ),
    pytest.param(lambda: ed448.Ed448PrivateKey.generate().public_key(), id="bad_key/ed448"),
    pytest.param(lambda: x25519.X25519PrivateKey.generate().public_key(), id="bad_key/x25519"),
    pytest.param(lambda: x448.X448PrivateKey.generate().public_key(), id="bad_key/x448"),
    pytest.param(
        lambda: dsa.generate_private_key(1024).public_key(),
        id="bad_key/dsa",
    ),
]


@pytest.mark.parametrize(("factory", "key_type"), GOOD_KEYS)
def test_good_keys_are_named(factory: KeyFactory, key_type: str) -> None:
    assert check_public_key(factory()) == key_type


@pytest.mark.parametrize("factory", BAD_KEYS)
def test_bad_keys_are_refused(factory: KeyFactory) -> None:
    with pytest.raises(BadPublicKey):
        check_public_key(factory())


def test_key_type_of_only_classifies() -> None:
    """A weak RSA key still has a type; only check_public_key judges it."""
    assert key_type_of(rsa_key(1024).public_key()) == "rsa-1024"
    with pytest.raises(BadPublicKey):
        key_type_of(ed448.Ed448PrivateKey.generate().public_key())


def test_fermat_factor_finds_the_primes() -> None:
    n = fermat_close_modulus()
    found = fermat_factor(n, 100)
    assert found is not None
    assert found[0] * found[1] == n
    assert fermat_factor(rsa_key().public_key().public_numbers().n, 100) is None


def test_small_primes_product_covers_primes_below_10000() -> None:
    assert SMALL_PRIMES_PRODUCT % 9973 == 0
    assert SMALL_PRIMES_PRODUCT % 10007 != 0  # the first prime above 10,000
    assert math.gcd(SMALL_PRIMES_PRODUCT, 2 * 3 * 5) == 30
