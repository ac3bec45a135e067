"""Public-key quality checks run on every certificate request (Boulder's ``goodkey``).

Accepted: RSA from 2048 to 8192 bits (a whole number of octets), ECDSA on P-256, P-384 and
P-521, and Ed25519 (RFC 8410). Refused: DSA, Ed448, X25519/X448, other curves, and RSA keys
that are weak in ways cheap to detect:

- the public exponent, per NIST SP 800-89 §5.3.3: "an odd integer such that
  65,537 ≤ e < 2**256";
- a modulus with a prime factor below 10,000 (one gcd against their product, computed once);
- a modulus whose two primes are so close that Fermat's method factors it within 100 rounds,
  as Boulder checks (the weakness of some key generators, CVE-2022-26320).

Not done here: known-compromised-key lists (Debian weak keys, blocked SPKI hashes), which need
data files and belong in a policy module.
"""

from __future__ import annotations

import math

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from server.errors import BadPublicKey

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
FERMAT_ROUNDS = 100  # Boulder's value: cheap, and catches generators that pick p and q close

_EC_CURVES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}


def _primes_below(limit: int) -> list[int]:
    """Return the primes below ``limit`` by the sieve of Eratosthenes."""
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(limit) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytearray(len(range(i * i, limit, i)))
    return [i for i, is_prime in enumerate(sieve) if is_prime]


# One gcd against this product tests all 1,229 small primes at once.
SMALL_PRIMES_PRODUCT = math.prod(_primes_below(10_000))

# Quadratic residues modulo 64 and 45045 (= 5·7·9·11·13): a number whose residue is outside
# these sets is not a perfect square, which spares most of the integer square roots.
_SQUARES_MOD_64 = frozenset(x * x % 64 for x in range(64))
_SQUARES_MOD_45045 = frozenset(x * x % 45045 for x in range(45045))


def key_type_of(key: PublicKeyTypes) -> str:
    """Name the key's type as profiles and drafts spell it ("ec-p256", "rsa-2048", "ed25519").

    It only classifies; ``check_public_key`` also judges the key's quality.
    """
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        try:
            return _EC_CURVES[key.curve.name]
        except KeyError:
            raise BadPublicKey(
                f"elliptic curve {key.curve.name} is not supported; use P-256, P-384 or P-521"
            ) from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise BadPublicKey(
        f"{_algorithm_name(key)} keys are not supported; "
        "use RSA, ECDSA (P-256, P-384, P-521) or Ed25519"
    )


def check_public_key(key: PublicKeyTypes) -> str:
    """Return the key's type, or raise ``BadPublicKey`` saying what is wrong with it."""
    key_type = key_type_of(key)
    if isinstance(key, rsa.RSAPublicKey):
        _check_rsa(key)
    return key_type


def _check_rsa(key: rsa.RSAPublicKey) -> None:
    numbers = key.public_numbers()
    bits = numbers.n.bit_length()
    if not RSA_MIN_BITS <= bits <= RSA_MAX_BITS:
        raise BadPublicKey(f"RSA keys must be {RSA_MIN_BITS} to {RSA_MAX_BITS} bits, not {bits}")
    if bits % 8:
        raise BadPublicKey(f"RSA modulus of {bits} bits is not a whole number of octets")
    # NIST SP 800-89 §5.3.3: e is "an odd integer such that 65,537 ≤ e < 2**256".
    if numbers.e % 2 == 0 or not 65537 <= numbers.e < 2**256:
        raise BadPublicKey("RSA public exponent must be odd, at least 65537 and below 2**256")
    if math.gcd(numbers.n, SMALL_PRIMES_PRODUCT) != 1:
        raise BadPublicKey("RSA modulus has a small prime factor")
    if fermat_factor(numbers.n, FERMAT_ROUNDS) is not None:
        raise BadPublicKey("RSA modulus is factorable: its two primes are too close together")


def fermat_factor(n: int, rounds: int) -> tuple[int, int] | None:
    """Try Fermat's method for ``rounds`` steps; return the factors (p, q) if found.

    An odd n = pq is a difference of squares a² - b² with a = (p + q)/2, b = (p - q)/2.
    Starting from a = ⌈√n⌉ and stepping a up by one, close primes are found quickly.
    """
    a = math.isqrt(n)
    if a * a == n:
        return a, a
    a += 1
    b2 = a * a - n
    for _ in range(rounds):
        if _is_square(b2):
            b = math.isqrt(b2)
            return a + b, a - b
        b2 += 2 * a + 1  # (a + 1)² - n = a² - n + 2a + 1
        a += 1
    return None


def _is_square(x: int) -> bool:
    if x & 63 not in _SQUARES_MOD_64 or x % 45045 not in _SQUARES_MOD_45045:
        return False
    root = math.isqrt(x)
    return root * root == x


def _algorithm_name(key: object) -> str:
    """A readable algorithm name for refusals: "DSA", "Ed448", "X25519"..."""
    name = type(key).__name__
    for suffix in ("PublicKey", "PrivateKey"):
        name = name.removesuffix(suffix)
    return name.lstrip("_") or "unknown"
