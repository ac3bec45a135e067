"""The finalize CSR's checks that are ACME's own, made before anything is recorded.

- Its identifiers (RFC 8555 §7.4): the request is parsed so that its names can be compared
  with the order's: the SANs (DNS names and IP addresses) and a CN, which must be one of them.
- Its key (RFC 8555 §11.1): not the key of any ACME account, found by the key's RFC 7638
  thumbprint, the id of the ``acme-key`` document of the account using it now and of the
  ``acme-old-key`` document of one that rolled over from it: two reads by primary key.

The engine verifies the request itself (signature, key, policy): ``Engine.verify_csr``.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from protocols.acme.jws import thumbprint_of
from protocols.acme.problems import ACMEProblem, ProblemType
from protocols.acme.records import ACCOUNT_KEY, OLD_ACCOUNT_KEY
from server.ca.csr import ParsedCSR
from server.errors import Malformed, NotFound
from server.model import Identifier, IdentifierType
from server.store.base import StoreReader


def csr_identifiers(csr_der: bytes) -> set[Identifier]:
    try:
        csr = x509.load_der_x509_csr(csr_der)
        try:
            sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            sans = []
        names = {Identifier.from_general_name(n) for n in sans}
        common_names = [
            str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise ACMEProblem(
            ProblemType.BAD_CSR, "the CSR is not a valid DER PKCS#10 request"
        ) from exc
    except Malformed as exc:  # Identifier.from_general_name: odd name types
        raise ACMEProblem(ProblemType.BAD_CSR, "the CSR holds an unsupported name") from exc
    if any(n.type not in (IdentifierType.DNS, IdentifierType.IP) for n in names):
        raise ACMEProblem(ProblemType.BAD_CSR, "the CSR may name only DNS names and IP addresses")
    for cn in common_names:
        if not any(cn.lower().rstrip(".") == n.value or cn == n.value for n in names):
            raise ACMEProblem(ProblemType.BAD_CSR, f"the CN {cn!r} is not one of the CSR's names")
    return names


async def refuse_account_key(store: StoreReader, csr: ParsedCSR) -> None:
    """RFC 8555 §11.1: servers "MUST verify that a CSR submitted in a finalize request does
    not contain a public key for any known account key pair": any account's, whatever its
    status (a deactivated account's key pair is still known), and keys rolled over from."""
    thumbprint = thumbprint_of(csr.public_key)
    if thumbprint is None:
        return  # a key type no account can have
    for kind in (ACCOUNT_KEY, OLD_ACCOUNT_KEY):
        try:
            await store.get_doc(kind, thumbprint)
        except NotFound:
            continue
        raise ACMEProblem(
            ProblemType.BAD_CSR,
            "the CSR's public key is an ACME account key; the certificate needs a key of its own",
        )
