"""A certificate request file read on the requester's side (``certforge request submit``).

The file is looked at before anything is sent: a private key given by mistake (``www.key``
for ``www.csr``) must never leave the machine, and a certificate or a stray file deserves
its own one-line answer rather than the server's "PEM data is not a CERTIFICATE REQUEST".
The request's signature and contents are the server's to judge (server/ca/csr.py).
"""

from __future__ import annotations

import re
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

CSR_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
CERTIFICATE_LABELS = ("CERTIFICATE", "X509 CERTIFICATE", "TRUSTED CERTIFICATE")
PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


class NotACSR(Exception):
    """The file is not a certificate request; the message says what it is, in one line."""


def read_csr(path: Path) -> bytes:
    """The request to send: the file's PEM request block, or the whole file when it is a
    DER request. Raises ``NotACSR`` saying what the file is, and ``OSError``."""
    data = path.read_bytes()
    name = str(path)
    blocks = [(m.group(1).decode(), m.group(0)) for m in PEM_BLOCK.finditer(data)]
    if not blocks:
        return _read_der(data, name)
    for label, block in blocks:
        if label in CSR_LABELS:
            try:
                x509.load_pem_x509_csr(block)
            except ValueError:
                raise NotACSR(f"{name}'s {label} block does not parse") from None
            return block  # only this block: nothing else in the file is sent
    labels = [label for label, _ in blocks]
    if any(label.endswith("PRIVATE KEY") for label in labels):
        raise NotACSR(_private_key(name))
    if any(label in CERTIFICATE_LABELS for label in labels):
        raise NotACSR(_certificate(name))
    raise NotACSR(f"{name} holds a PEM {labels[0]}, not a certificate request")


def _read_der(data: bytes, name: str) -> bytes:
    try:
        x509.load_der_x509_csr(data)
    except ValueError:
        pass
    else:
        return data
    try:
        x509.load_der_x509_certificate(data)
    except ValueError:
        pass
    else:
        raise NotACSR(_certificate(name))
    try:
        serialization.load_der_private_key(data, password=None)
    except TypeError:  # an encrypted key: still a key
        raise NotACSR(_private_key(name)) from None
    except (ValueError, UnsupportedAlgorithm):
        raise NotACSR(f"{name} is not a PEM or DER certificate request") from None
    raise NotACSR(_private_key(name))


def _private_key(name: str) -> str:
    return (
        f"{name} is a private key, not a certificate request, and was not sent "
        f"(make one with: openssl req -new -key {name} -subj /CN=NAME -out NAME.csr)"
    )


def _certificate(name: str) -> str:
    return f"{name} is a certificate, not a certificate request"
