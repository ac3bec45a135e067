"""The finalize CSR's identifiers (RFC 8555 §7.4), read before anything is recorded.

The engine verifies the request fully (signature, key, policy); here it is only parsed so
that its names can be compared with the order's: the SANs (DNS names and IP addresses) and
a CN, which must be one of them.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

from protocols.acme.problems import ACMEProblem, ProblemType
from server.errors import Malformed
from server.model import Identifier, IdentifierType


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
