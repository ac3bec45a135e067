"""RFC 6960 §4.1 OCSPRequest, parsed (sans-I/O) into what the responder needs: one CertID and
the nonce, if any.

Enforced here:
- RFC 5019 §2.1.1: "OCSPRequests conformant to this profile MUST include only one Request
  in the OCSPRequest.RequestList structure": more than one is ``malformedRequest``.
- RFC 8954 §2.1: a nonce is 1 to 32 octets; "The responder MAY ... reject a request with a
  nonce longer than 32 octets with malformedRequest".
- A CertID hashed with an algorithm other than SHA-1 or SHA-2 cannot name any issuer this
  responder serves: ``unauthorized``, like any issuer it does not serve (RFC 6960 §2.3).

Not supported: signed requests are accepted but their signature is not checked (RFC 6960
§4.1.2 makes requestor signatures optional, and no access control depends on them here).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509 import ocsp

from server.errors import Malformed, TooLarge, Unauthorized
from server.revocation.ocsp import HASHES, CertID

MAX_REQUEST_BYTES = 8192  # an unsigned request is about 80 bytes; a signed one a few KB
MAX_NONCE_BYTES = 32
MAX_SERIAL_BITS = 160  # 20 octets; one more bit than a conforming CA uses, for leniency


@dataclass(frozen=True, slots=True)
class OCSPRequest:
    cert_id: CertID
    nonce: bytes | None


def parse_ocsp_request(data: bytes) -> OCSPRequest:
    if len(data) > MAX_REQUEST_BYTES:
        raise TooLarge(f"an OCSPRequest is at most {MAX_REQUEST_BYTES} bytes here")
    try:
        request = ocsp.load_der_ocsp_request(data)
    except NotImplementedError:
        raise Malformed("an OCSPRequest must carry exactly one Request (RFC 5019)") from None
    except ValueError:
        raise Malformed("the body is not a DER OCSPRequest") from None
    try:
        algorithm = request.hash_algorithm.name
    except UnsupportedAlgorithm:
        raise Unauthorized("the CertID's hash algorithm is not supported") from None
    if algorithm not in HASHES:
        raise Unauthorized("the CertID's hash algorithm is not supported")
    if request.serial_number < 0:
        raise Malformed("a certificate serial number is positive (RFC 5280 §4.1.2.2)")
    if request.serial_number.bit_length() > MAX_SERIAL_BITS:
        # No conforming CA issues such a serial, and each distinct one would cost a signed
        # answer kept in the responder's cache.
        raise Malformed("a certificate serial number is at most 20 octets (RFC 5280 §4.1.2.2)")
    cert_id = CertID(
        algorithm, request.issuer_name_hash, request.issuer_key_hash, request.serial_number
    )
    return OCSPRequest(cert_id, _nonce(request))


def _nonce(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        extension = request.extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        raise Malformed("the request's extensions cannot be parsed") from None
    nonce = extension.value.nonce
    if not 1 <= len(nonce) <= MAX_NONCE_BYTES:
        raise Malformed(f"a nonce is 1 to {MAX_NONCE_BYTES} octets (RFC 8954)")
    return nonce
