"""Certificate serial numbers: positive, unpredictable, never reused by accident.

RFC 5280 §4.1.2.2: the serial number "MUST be a positive integer" and conforming CAs "MUST NOT
use serialNumber values longer than 20 octets". CA/Browser Forum BR §7.1: serial numbers
"SHALL be greater than zero" and contain "at least 64 bits of output from a CSPRNG". A 159-bit
value (as ``x509.random_serial_number`` draws) satisfies all three: it stays within 20 octets
even with DER's sign bit, and collisions are left to the store's unique index, not to luck.
"""

from __future__ import annotations

from server import csprng

SERIAL_BITS = 159


def new_serial() -> int:
    """Draw a fresh serial number from OpenSSL's CSPRNG (``server.csprng``).

    The loop only guards against the astronomically unlikely zero, which RFC 5280 forbids.
    """
    while True:
        serial = csprng.randbits(SERIAL_BITS)
        if serial > 0:
            return serial
