"""The public keys certforge holds itself, which no certificate request may carry.

A certificate for one of these keys, issued to whoever asked, would put certforge's own key
under a name and usage certforge did not choose: a TLS server certificate for the issuing CA's
key, a client certificate for the OCSP signer's. The request's signature proves possession of
the private key, so such a request comes from certforge's own key material, misused or
leaked; either way it is refused as a bad key (``ReservedPublicKey``), and nothing is recorded.

Which keys:

- the CAs': the root and every issuing CA with the intermediates of its chain, known to the
  engine from its ``CAHierarchy`` (``reserved_keys_of``);
- keys other parts hold and register with ``ReservedKeys.add`` when they load or make one:
  the OCSP signers (``server/revocation/signers.py``), the HTTPS listener's TLS key
  (``server/tls.py``) and the SCEP RA (``protocols/scep/ra.py``). The engine imports none of
  them.

A key stays reserved once added, also after its holder replaced it: a retired key is still
certforge's, and the set grows by one key per renewal, a few a year.

Keys are kept as the hex SHA-256 of their DER SubjectPublicKeyInfo, the value every verified
request carries already (``ParsedCSR.key_sha256``), so the check on the issuance path is one
set lookup.

Not covered: a key another process sharing the data directory or the store made and this one
has not loaded yet (a rotated OCSP signer until this process's next hourly check, a TLS
certificate renewed by worker 0 until the other workers reload it, within a minute).
"""

from __future__ import annotations

import hashlib
import logging

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from server.ca.issuers import CAHierarchy
from server.errors import ReservedPublicKey

log = logging.getLogger("certforge.engine")


def spki_sha256(key: PublicKeyTypes) -> str:
    """The hex SHA-256 of the key's DER SubjectPublicKeyInfo (``ParsedCSR.key_sha256``)."""
    return hashlib.sha256(
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    ).hexdigest()


class ReservedKeys:
    def __init__(self) -> None:
        self._holders: dict[str, str] = {}  # SPKI SHA-256 -> who holds the key, for the log

    def add(self, holder: str, key: PublicKeyTypes) -> None:
        """Reserve ``key``; ``holder`` names it in the log ("the OCSP signer of default")."""
        self._holders.setdefault(spki_sha256(key), holder)

    def __contains__(self, key_sha256: object) -> bool:
        return key_sha256 in self._holders

    def check(self, key_sha256: str) -> None:
        """Raise ``ReservedPublicKey`` if the key is one of certforge's own."""
        holder = self._holders.get(key_sha256)
        if holder is None:
            return
        # A warning, not an error: nothing failed, but the sender could sign with a key only
        # certforge should hold, which an operator wants to hear about.
        log.warning(
            "refused a certificate request for one of certforge's own keys",
            extra={"holder": holder, "key_sha256": key_sha256},
        )
        raise ReservedPublicKey(
            "the request's public key is one of this certificate authority's own keys; "
            "use a key of your own"
        )


def reserved_keys_of(cas: CAHierarchy) -> ReservedKeys:
    """The CAs' keys: the root's and each issuing CA's chain (the CA and its intermediates)."""
    reserved = ReservedKeys()
    reserved.add("the root CA", cas.root.public_key())
    for ca in cas.issuers.values():
        for cert in ca.chain:
            reserved.add(f"the CA {cert.subject.rfc4514_string()}", cert.public_key())
    return reserved
