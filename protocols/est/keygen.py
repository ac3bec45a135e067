"""serverkeygen (RFC 7030 §4.4): certforge makes the key pair the client asked for.

§4.4.1: the client's request carries the subject and extensions it wants; its public key only
says which kind of key to make ("the key type and size ... of the public key in the request").
The new key is of the same kind (same curve, same RSA size, Ed25519). certforge then signs a
request of its own with the new key, with the client's subject and subjectAltName, and that is
what the engine verifies and the profile judges like any other request.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from server.errors import BadPublicKey

_CURVES: dict[str, ec.EllipticCurve] = {
    "ec-p256": ec.SECP256R1(),
    "ec-p384": ec.SECP384R1(),
    "ec-p521": ec.SECP521R1(),
}
_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def generate_like(key_type: str) -> _PrivateKey:
    """A new private key of ``key_type`` ("ec-p256", "rsa-3072", "ed25519"...)."""
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    bits = key_type.removeprefix("rsa-")
    if key_type.startswith("rsa-") and bits.isdigit():
        return rsa.generate_private_key(public_exponent=65537, key_size=int(bits))
    raise BadPublicKey(f"certforge cannot generate {key_type} keys")


def request_for_new_key(csr: x509.CertificateSigningRequest, key_type: str) -> tuple[bytes, bytes]:
    """A DER PKCS#10 request signed by a new key, and that key as DER PKCS#8."""
    key = generate_like(key_type)
    builder = x509.CertificateSigningRequestBuilder().subject_name(csr.subject)
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        builder = builder.add_extension(san.value, critical=san.critical)
    except x509.ExtensionNotFound:
        pass
    digest = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    new_csr = builder.sign(key, digest)
    pkcs8 = key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return new_csr.public_bytes(Encoding.DER), pkcs8
