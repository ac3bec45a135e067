"""serverkeygen (RFC 7030 §4.4): certforge makes the key pair the client asked for.

§4.4.1: the client's request carries the subject and extensions it wants; its public key only
says which kind of key to make ("the key type and size ... of the public key in the request").
The new key is of the same kind (same curve, same RSA size, Ed25519). certforge then signs a
request of its own with the new key, with the client's subject and subjectAltName, and that is
what the engine verifies and the profile judges like any other request.

Generation is the expensive step, so it comes after everything that can refuse without the
key: the requester, the request, and the profile's allowed key types (``check_generable``,
also capping RSA at 4096 bits); and only ``CONCURRENT_GENERATIONS`` run at once.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from server.config import ProfileConfig
from server.errors import BadPublicKey, Forbidden

_CURVES: dict[str, ec.EllipticCurve] = {
    "ec-p256": ec.SECP256R1(),
    "ec-p384": ec.SECP384R1(),
    "ec-p521": ec.SECP521R1(),
}
_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


# RSA key generation grows with the fourth power of the size: 8192 bits took 9 to 16 s of CPU.
MAX_RSA_BITS = 4096
# Generations at once: each holds a thread of the default executor, which the store and TLS
# work share; more requests wait their turn.
CONCURRENT_GENERATIONS = 2


def check_generable(profile: ProfileConfig, key_type: str) -> None:
    """Before any key is made: certforge makes this kind of key, and the profile allows it
    (the profiles policy judges the request of the new key again, like any other). Refusing
    first means a request the profile would deny costs no key generation."""
    bits = key_type.removeprefix("rsa-")
    is_rsa = key_type.startswith("rsa-") and bits.isdigit()
    if is_rsa and int(bits) > MAX_RSA_BITS:
        raise BadPublicKey(f"certforge generates RSA keys of at most {MAX_RSA_BITS} bits")
    if key_type not in _CURVES and key_type != "ed25519" and not is_rsa:
        raise BadPublicKey(f"certforge cannot generate {key_type} keys")
    if key_type in profile.key_types or (
        is_rsa and "rsa" in profile.key_types and int(bits) >= profile.rsa_min_bits
    ):
        return
    raise Forbidden(f"profile {profile.name} does not allow {key_type} keys")


def generate_like(key_type: str) -> _PrivateKey:
    """A new private key of ``key_type`` ("ec-p256", "rsa-3072", "ed25519"...)."""
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    bits = key_type.removeprefix("rsa-")
    if key_type.startswith("rsa-") and bits.isdigit() and int(bits) <= MAX_RSA_BITS:
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
