"""EST messages, sans I/O: what goes over the wire, built and read without touching a socket.

RFC 7030 §4 with RFC 8951's clarifications:

- Bodies are base64 of DER (RFC 8951 §3.1), read by ``server.ca.csr.csr_der_from_bytes`` as the
  REST front end's are. Whitespace and line breaks inside the base64 are
  tolerated, and the Content-Transfer-Encoding header is ignored; certforge sends none on its
  answers (RFC 7030 erratum 5107: HTTP is binary-clean), except inside the MIME parts of a
  multipart answer, where it is MIME's own header.
- ``certs_only``: the Simple PKI Response, a degenerate CMS SignedData (RFC 5272 §4.1).
- ``csr_attributes``: CsrAttrs (RFC 7030 §4.5.2), what the profile wants in a request.
- ``serverkeygen_response``: multipart/mixed with the private key as application/pkcs8 (or,
  encrypted, as application/pkcs7-mime; smime-type=server-generated-key) and the certificate
  as a certs-only response (RFC 7030 §4.4.2).
- ``decrypt_key_identifier``: the key a serverkeygen client wants its key encrypted to.
- ``check_pop_linking``: the tls-unique value in the CSR's challengePassword (RFC 7030 §3.5).

Deliberately not built: full CMC (``fullcmc`` answers 501) and the symmetric encryption of
server-generated keys (RFC 7030 §4.4.1.1; a request that asks for it is refused with 501).
"""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Sequence

from asn1crypto import core
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from server.ca.csr import challenge_password
from server.config import ProfileConfig
from server.errors import BadCSR, Forbidden, Malformed, Unavailable

PKCS7_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
PKCS7_MIME = "application/pkcs7-mime"
CSRATTRS = "application/csrattrs"
PKCS10 = "application/pkcs10"
PKCS8 = "application/pkcs8"
# RFC 7030 §4.4.2: the key, encrypted (EnvelopedData; see ``protocols.est.keywrap``).
PKCS7_SERVER_KEY = "application/pkcs7-mime; smime-type=server-generated-key"

# RFC 7030 §4.4.1.1 and §4.4.1.2: a request for an encrypted server-generated key.
DECRYPT_KEY_IDENTIFIER = "1.2.840.113549.1.9.16.2.37"
ASYMMETRIC_DECRYPT_KEY_IDENTIFIER = "1.2.840.113549.1.9.16.2.54"

_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"  # noqa: S105 - an OID, not a password
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_SUBJECT_ALT_NAME = "2.5.29.17"
# The key (and curve) a profile asks for first, and the signature that goes with it.
_KEY_ATTRIBUTES: dict[str, tuple[str, str | None, str]] = {
    "ec-p256": ("1.2.840.10045.2.1", "1.2.840.10045.3.1.7", "1.2.840.10045.4.3.2"),
    "ec-p384": ("1.2.840.10045.2.1", "1.3.132.0.34", "1.2.840.10045.4.3.3"),
    "ec-p521": ("1.2.840.10045.2.1", "1.3.132.0.35", "1.2.840.10045.4.3.4"),
    "rsa": ("1.2.840.113549.1.1.1", None, "1.2.840.113549.1.1.11"),
    "ed25519": ("1.3.101.112", None, "1.3.101.112"),
}


# ------------------------------------------------------------------ responses
def base64_lines(der: bytes, newline: bytes = b"\n") -> bytes:
    """Base64 in 64-character lines, as RFC 7030's examples and most clients expect."""
    text = base64.b64encode(der)
    return b"".join(text[i : i + 64] + newline for i in range(0, len(text), 64))


def certs_only(certs_der: Sequence[bytes], newline: bytes = b"\n") -> bytes:
    """A certs-only Simple PKI Response (RFC 5272 §4.1), base64 of its DER."""
    certs = [x509.load_der_x509_certificate(der) for der in certs_der]
    return base64_lines(pkcs7.serialize_certificates(certs, Encoding.DER), newline)


def serverkeygen_response(key_part: tuple[str, bytes], cert_der: bytes) -> tuple[bytes, str]:
    """RFC 7030 §4.4.2: "the private key ... application/pkcs8 ... and the certificate ...
    application/pkcs7-mime" as the two parts of a multipart/mixed body (RFC 2046 §5.1.1,
    CRLF line ends). ``key_part`` is (Content-Type, DER): PKCS#8, or the encrypted key
    (``PKCS7_SERVER_KEY``) when the client asked for it encrypted."""
    boundary = "est-" + secrets.token_hex(12)
    parts = [
        (key_part[0], base64_lines(key_part[1], b"\r\n")),
        (PKCS7_CERTS_ONLY, certs_only([cert_der], b"\r\n")),
    ]
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {ctype}\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n".encode()
        + payload
        for ctype, payload in parts
    )
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/mixed; boundary={boundary}"


# ------------------------------------------------------------------ CSR attributes
class _Values(core.SetOf):  # type: ignore[misc] # asn1crypto has no type hints
    _child_spec = core.ObjectIdentifier


class _Attribute(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("values", _Values)]  # noqa: RUF012


class _AttrOrOID(core.Choice):  # type: ignore[misc]
    _alternatives = [("oid", core.ObjectIdentifier), ("attribute", _Attribute)]  # noqa: RUF012


class _AnyValues(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


class _AnyAttribute(core.Sequence):  # type: ignore[misc]
    """A request attribute of any type (RFC 2986 §4.1), its values left unparsed."""

    _fields = [("type", core.ObjectIdentifier), ("values", _AnyValues)]  # noqa: RUF012


class _CsrAttrs(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _AttrOrOID


def csr_attributes(profile: ProfileConfig) -> bytes:
    """CsrAttrs (RFC 7030 §4.5.2) for a profile, DER: its first key type (the curve as the
    attribute's value), that key's signature algorithm, challengePassword when requests must
    carry the tls-unique, and the subjectAltName extension when the profile needs one."""
    items: list[_AttrOrOID] = []
    if profile.est_pop_linking:
        items.append(_AttrOrOID(name="oid", value=_CHALLENGE_PASSWORD))
    key = next((_KEY_ATTRIBUTES[k] for k in profile.key_types if k in _KEY_ATTRIBUTES), None)
    if key is not None:
        key_oid, curve, signature = key
        if curve is None:
            items.append(_AttrOrOID(name="oid", value=key_oid))
        else:
            items.append(_AttrOrOID(name="attribute", value={"type": key_oid, "values": [curve]}))
        items.append(_AttrOrOID(name="oid", value=signature))
    if profile.require_san:
        items.append(
            _AttrOrOID(
                name="attribute", value={"type": _EXTENSION_REQUEST, "values": [_SUBJECT_ALT_NAME]}
            )
        )
    return bytes(_CsrAttrs(items).dump())


# ------------------------------------------------------------------ PoP linking
def check_pop_linking(csr: x509.CertificateSigningRequest, tls_unique: bytes | None) -> None:
    """RFC 7030 §3.5: "the EST server MUST verify that the challengePassword ... contains the
    tls-unique value" of the TLS session, base64-encoded, when the server requires linking.

    ``tls_unique`` is None on a TLS 1.3 connection, where tls-unique does not exist (RFC 8446
    §C.5, RFC 9266): such a request cannot prove the link and is refused.
    """
    if tls_unique is None:
        raise Forbidden(
            "this profile links the request to the TLS session (RFC 7030 §3.5) with "
            "tls-unique, which exists only in TLS 1.2: connect with TLS 1.2"
        )
    password = challenge_password(csr)
    if password is None:
        raise Forbidden(
            "this profile needs the TLS session's tls-unique, base64-encoded, in the "
            "request's challengePassword (RFC 7030 §3.5)"
        )
    expected = base64.b64encode(tls_unique).decode()
    if not hmac.compare_digest(password.strip().encode(), expected.encode()):
        raise Forbidden("the challengePassword is not this TLS session's tls-unique")


def decrypt_key_identifier(csr_der: bytes) -> bytes | None:
    """RFC 7030 §4.4.1.2: the AsymmetricDecryptKeyIdentifier (an OCTET STRING, "the
    SubjectKeyIdentifier of the certificate containing the key") to encrypt the new key to;
    None when the request asks for the key unencrypted.

    A request for a symmetric key-encryption key (§4.4.1.1, DecryptKeyIdentifier) is refused
    with 501: certforge holds no symmetric keys shared with its clients.
    """
    try:
        info = asn1_csr.CertificationRequest.load(csr_der)["certification_request_info"]
        attributes = {}
        for attribute in info["attributes"]:
            parsed = _AnyAttribute.load(attribute.dump())
            attributes[parsed["type"].dotted] = [v.dump() for v in parsed["values"]]
    except ValueError as exc:
        raise Malformed("the request's attributes are malformed") from exc
    if ASYMMETRIC_DECRYPT_KEY_IDENTIFIER in attributes:
        try:
            [key_id] = [
                core.OctetString.load(v).native
                for v in attributes[ASYMMETRIC_DECRYPT_KEY_IDENTIFIER]
            ]
        except ValueError:
            key_id = b""
        if not key_id:
            raise BadCSR("the AsymmetricDecryptKeyIdentifier must be one non-empty OCTET STRING")
        return bytes(key_id)
    if DECRYPT_KEY_IDENTIFIER in attributes:
        raise Unavailable(
            "symmetric encryption of server-generated keys (RFC 7030 §4.4.1.1) is not "
            "offered; ask for asymmetric encryption (§4.4.1.2) or none"
        )
    return None
