"""The certificates the server uses itself, which the monitor watches as they are now.

Certificates in the store are found by the store scan. What the store does not know is which
of them are in use: the server's own TLS, OCSP signing and SCEP RA certificates are renewed
before they expire, and the ones they replaced stay valid in the store. So each of these is
read from where the server takes it (a file, the live signer) by a ``WatchSource``, and the
store scan leaves their profiles to it: a warning about a replaced certificate would be
noise, and one about the certificate in use must not wait for the store. The CA certificates
are not in the store at all.

A source's ``read`` may block (it reads files): the monitor calls it off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from server.ca.issuers import CAHierarchy

CA_ROLE = "ca"


@dataclass(frozen=True, slots=True)
class WatchSource:
    role: str  # what the certificates are for: "ca", "tls", "ocsp-signer", "scep-ra"...
    # The store profile these certificates are recorded under, which the store scan leaves to
    # this source; None for certificates that are not in the store (the CAs).
    profile: str | None
    read: Callable[[], Sequence[tuple[str, x509.Certificate]]]  # (name, certificate) in use


def ca_source(cas: CAHierarchy) -> WatchSource:
    """The root and every issuing CA (with the intermediates of an imported chain)."""

    def read() -> list[tuple[str, x509.Certificate]]:
        found = [("root", cas.root)]
        for name, ca in cas.issuers.items():
            found += [(name if i == 0 else f"{name}/{i}", c) for i, c in enumerate(ca.chain)]
        return found

    return WatchSource(CA_ROLE, None, read)


def leaf_of(path: Path) -> list[x509.Certificate]:
    """The first certificate of a PEM file, or none while it does not exist (yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return x509.load_pem_x509_certificates(data)[:1]
