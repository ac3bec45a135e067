"""The few DER encodings the CRL builder writes itself (ITU-T X.690 §8 and §10).

cryptography builds and signs everything else (the CRL's header and extensions, as a template
without entries). What it cannot do fast enough is a CRL with a million entries: each
``RevokedCertificate`` is a Python object built through its builder, about 30 µs apiece, and
the list is held twice. The revokedCertificates entries are simple and fixed in shape
(RFC 5280 §5.1: serial, revocationDate, optional reasonCode and invalidityDate), so they are
encoded here directly, and ``splice_entries`` puts them into the template's TBSCertList.
``tests/unit/revocation/test_der.py`` checks the bytes against cryptography's own encoding.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
ENUMERATED = 0x0A


def length(n: int) -> bytes:
    """X.690 §8.1.3: the short form below 128, else the long form."""
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + length(len(content)) + content


def integer(value: int) -> bytes:
    """A non-negative INTEGER in the fewest octets, with a leading zero when the top bit is set
    (X.690 §8.3.2)."""
    if value < 0:
        raise ValueError("only non-negative integers are encoded here")
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: CRL times are UTC")
    return value.astimezone(UTC)


def time(value: datetime) -> bytes:
    """RFC 5280 §5.1.2.4 and §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050,
    both in Zulu time to the second."""
    v = _utc(value)
    if 1950 <= v.year < 2050:
        # Formatted by hand: strftime is the slowest step of encoding a CRL entry.
        text = f"{v.year % 100:02}{v.month:02}{v.day:02}{v.hour:02}{v.minute:02}{v.second:02}Z"
        return b"\x17\x0d" + text.encode()
    return generalized_time(v)


def generalized_time(value: datetime) -> bytes:
    """RFC 5280 §4.1.2.5.2: YYYYMMDDHHMMSSZ, no fractional seconds."""
    return tlv(GENERALIZED_TIME, _utc(value).strftime("%Y%m%d%H%M%SZ").encode())


def elements(der: bytes) -> Iterator[bytes]:
    """The TLVs inside one constructed value's content octets, each whole."""
    i = 0
    while i < len(der):
        first = der[i + 1]
        if first < 0x80:
            header, size = 2, first
        else:
            n = first & 0x7F
            header, size = 2 + n, int.from_bytes(der[i + 2 : i + 2 + n], "big")
        yield der[i : i + header + size]
        i += header + size


def content(der: bytes) -> bytes:
    """The content octets of one TLV."""
    first = der[1]
    header = 2 if first < 0x80 else 2 + (first & 0x7F)
    return der[header:]
