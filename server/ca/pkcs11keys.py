"""Keys in a PKCS#11 token behind cryptography's private key interfaces.

cryptography's Rust builders (``CertificateBuilder``, ``CertificateRevocationListBuilder``,
``OCSPResponseBuilder``, ``CertificateSigningRequestBuilder``) accept any subclass of
``ec.EllipticCurvePrivateKey`` or ``rsa.RSAPrivateKey``: they tell the key type with
``isinstance`` and call its Python ``sign(data, ...)`` with the encoded to-be-signed bytes.
So these classes hash the data here and let the token sign the digest, and every place
that signs with a CA key (``server.ca.build``, ``server.revocation``, the SCEP CertRep and
envelope code, which call ``sign`` and ``decrypt`` directly) works unchanged.

- ECDSA: the digest, CKM_ECDSA; the token's r||s is DER-encoded (``encode_dss_signature``).
- RSA PKCS#1 v1.5: the DigestInfo of the digest, CKM_RSA_PKCS (one mechanism for every
  hash, and the token receives 50 bytes, not the whole certificate).
- RSA-PSS: the digest, CKM_RSA_PKCS_PSS with the hash, MGF1 hash and salt length given.
- RSA decryption (the SCEP RA's envelopes): CKM_RSA_PKCS or CKM_RSA_PKCS_OAEP.

The private key never leaves the token: ``private_bytes`` and ``private_numbers`` raise
``TypeError``. ECDH (``exchange``) and deterministic ECDSA are not offered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pkcs11
from asn1crypto.core import ObjectIdentifier, OctetString
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as pad
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from server.ca.pkcs11uri import PKCS11URI
from server.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding
    from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo
    from cryptography.utils import Buffer

    from server.ca.pkcs11 import TokenPool

_CURVES: dict[str, tuple[str, type[ec.EllipticCurve]]] = {
    "secp256r1": ("1.2.840.10045.3.1.7", ec.SECP256R1),
    "secp384r1": ("1.3.132.0.34", ec.SECP384R1),
    "secp521r1": ("1.3.132.0.35", ec.SECP521R1),
}
_CURVE_BY_PARAMS = {ObjectIdentifier(oid).dump(): curve for oid, curve in _CURVES.values()}

# RFC 8017 §9.2 note 1: the DER DigestInfo prefix of each hash, for CKM_RSA_PKCS.
_DIGEST_INFO = {
    "sha224": bytes.fromhex("302d300d06096086480165030402040500041c"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_HASH_MECHANISMS = {
    "sha1": (Mechanism.SHA_1, MGF.SHA1),
    "sha224": (Mechanism.SHA224, MGF.SHA224),
    "sha256": (Mechanism.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512, MGF.SHA512),
}
_NOT_EXTRACTABLE = "the private key is in a PKCS#11 token and cannot be exported"


def ec_params(curve_name: str) -> bytes:
    """CKA_EC_PARAMS of a named curve: the DER of its OID."""
    return bytes(ObjectIdentifier(_CURVES[curve_name][0]).dump())


def public_key_of(
    session: pkcs11.Session, key: pkcs11.PrivateKey, *, where: str
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key of a private key object: RSA's is on the private key itself; an EC
    key's is the public key object with the same CKA_ID (or label, when it has no ID)."""
    if key.key_type is KeyType.RSA:
        n, e = key[Attribute.MODULUS], key[Attribute.PUBLIC_EXPONENT]
        return rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big")).public_key()
    if key.key_type is not KeyType.EC:
        raise ConfigError(f"{where}: a {key.key_type.name} key cannot sign certificates")
    template: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PUBLIC_KEY}
    template[Attribute.ID] = key.id if key.id else None
    if not key.id:
        del template[Attribute.ID]
        template[Attribute.LABEL] = key.label
    found = list(session.get_objects(template))
    if len(found) != 1:
        raise ConfigError(
            f"{where}: no single EC public key object next to it (found {len(found)})"
        )
    curve = _CURVE_BY_PARAMS.get(bytes(found[0][Attribute.EC_PARAMS]))
    if curve is None:
        raise ConfigError(f"{where}: its curve is not P-256, P-384 or P-521")
    point = bytes(found[0][Attribute.EC_POINT])
    # PKCS#11 §2.3.3: CKA_EC_POINT is the DER of an OCTET STRING; a few tokens give it bare.
    size = 1 + 2 * ((curve().key_size + 7) // 8)
    if len(point) != size:
        point = bytes(OctetString.load(point))
    return ec.EllipticCurvePublicKey.from_encoded_point(curve(), point)


def _digest(data: Buffer, algorithm: hashes.HashAlgorithm | Prehashed) -> tuple[bytes, str]:
    if isinstance(algorithm, Prehashed):
        digest = bytes(data)
        if len(digest) != algorithm.digest_size:
            raise ValueError("the prehashed digest does not have the hash's length")
        return digest, algorithm._algorithm.name  # cryptography exposes it only privately
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm.name


class _TokenKey:
    """What both key classes share: which key, in which pool."""

    def __init__(self, pool: TokenPool, uri: PKCS11URI) -> None:
        self._pool = pool
        self.uri = uri

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        """Never: the key is non-extractable (``server/ca/keystore.write_key`` meets this)."""
        raise TypeError(_NOT_EXTRACTABLE)

    def _sign(self, data: bytes, mechanism: Mechanism, param: object = None) -> bytes:
        with self._pool.session() as pooled:
            key = pooled.private_key(self.uri)
            if not isinstance(key, pkcs11.SignMixin):
                raise UnsupportedAlgorithm(f"the token's key {self.uri} may not sign")
            return key.sign(data, mechanism=mechanism, mechanism_param=param)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.uri}>"

    def __copy__(self) -> Any:
        return self  # immutable, and there is nothing in memory to copy

    def __deepcopy__(self, memo: dict[int, object]) -> Any:
        return self


class PKCS11ECPrivateKey(_TokenKey, ec.EllipticCurvePrivateKey):
    def __init__(self, pool: TokenPool, uri: PKCS11URI, public: ec.EllipticCurvePublicKey):
        super().__init__(pool, uri)
        self._public = public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: Buffer, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithm("a PKCS#11 EC key signs with ECDSA only")
        if getattr(signature_algorithm, "deterministic_signing", False):
            raise UnsupportedAlgorithm("the token does not sign deterministically (RFC 6979)")
        digest, _ = _digest(data, signature_algorithm.algorithm)
        raw = self._sign(digest, Mechanism.ECDSA)
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise UnsupportedAlgorithm("certforge does not derive keys with a CA key")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise TypeError(_NOT_EXTRACTABLE)


class PKCS11RSAPrivateKey(_TokenKey, rsa.RSAPrivateKey):
    def __init__(self, pool: TokenPool, uri: PKCS11URI, public: rsa.RSAPublicKey):
        super().__init__(pool, uri)
        self._public = public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    def sign(
        self,
        data: Buffer,
        padding: AsymmetricPadding,
        algorithm: Prehashed | hashes.HashAlgorithm | NoDigestInfo,
    ) -> bytes:
        if not isinstance(algorithm, Prehashed | hashes.HashAlgorithm):
            raise UnsupportedAlgorithm("a PKCS#11 RSA key signs a DigestInfo only")
        digest, name = _digest(data, algorithm)
        if isinstance(padding, pad.PKCS1v15):
            if name not in _DIGEST_INFO:
                raise UnsupportedAlgorithm(f"{name} is not a hash certforge signs with")
            return self._sign(_DIGEST_INFO[name] + digest, Mechanism.RSA_PKCS)
        if isinstance(padding, pad.PSS):
            params = (*_mechanisms(name, padding.mgf), self._salt_length(padding, len(digest)))
            return self._sign(digest, Mechanism.RSA_PKCS_PSS, params)
        raise UnsupportedAlgorithm(f"{padding.name} is not an RSA signature padding")

    def _salt_length(self, padding: pad.PSS, digest_size: int) -> int:
        salt = padding._salt_length  # cryptography exposes it only privately
        if isinstance(salt, int):
            return salt
        if salt is pad.PSS.DIGEST_LENGTH:
            return digest_size
        if salt is pad.PSS.MAX_LENGTH:
            # RFC 8017 §9.1.1: emLen - hLen - 2, emLen = ceil((modBits - 1) / 8).
            return (self.key_size - 1 + 7) // 8 - digest_size - 2
        raise ValueError("PSS salt length AUTO is for verification only")

    def decrypt(self, ciphertext: bytes, padding: AsymmetricPadding) -> bytes:
        mechanism: Mechanism
        param: object = None
        if isinstance(padding, pad.PKCS1v15):
            mechanism = Mechanism.RSA_PKCS
        elif isinstance(padding, pad.OAEP):
            hash_mechanism, mgf = _mechanisms(padding.algorithm.name, padding.mgf)
            mechanism, param = Mechanism.RSA_PKCS_OAEP, (hash_mechanism, mgf, padding._label)
        else:
            raise UnsupportedAlgorithm(f"{padding.name} is not an RSA encryption padding")
        try:
            with self._pool.session() as pooled:
                key = pooled.private_key(self.uri)
                if not isinstance(key, pkcs11.DecryptMixin):
                    raise UnsupportedAlgorithm(f"the token's key {self.uri} may not decrypt")
                # bytes in, bytes out (an iterator comes back only for an iterator given).
                try:
                    return cast(
                        "bytes", key.decrypt(ciphertext, mechanism=mechanism, mechanism_param=param)
                    )
                except p11.GeneralError:
                    # SoftHSM2 answers a bad PKCS#1 block so too: if the key still answers,
                    # the ciphertext was bad, and the pool must not take it for the token
                    # gone (anyone can send an envelope). Otherwise this raises the token
                    # error the pool handles.
                    key[Attribute.KEY_TYPE]
                    raise ValueError("Decryption failed") from None
        except (p11.EncryptedDataInvalid, p11.EncryptedDataLenRange, p11.DataLenRange) as exc:
            # The one answer cryptography gives for every bad ciphertext (no oracle).
            raise ValueError("Decryption failed") from exc
        except (p11.ArgumentsBad, p11.MechanismInvalid, p11.MechanismParamInvalid) as exc:
            # SoftHSM 2.6, for one, does OAEP with SHA-1 only.
            raise UnsupportedAlgorithm(f"the token cannot decrypt {padding.name}") from exc

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise TypeError(_NOT_EXTRACTABLE)


def _mechanisms(hash_name: str, mgf: pad.MGF) -> tuple[Mechanism, MGF]:
    if not isinstance(mgf, pad.MGF1):
        raise UnsupportedAlgorithm("only MGF1 is a mask generation function")
    mgf_hash = mgf._algorithm.name  # cryptography exposes it only privately
    if hash_name not in _HASH_MECHANISMS or mgf_hash not in _HASH_MECHANISMS:
        raise UnsupportedAlgorithm(f"{hash_name} with MGF1-{mgf_hash} is not supported")
    return _HASH_MECHANISMS[hash_name][0], _HASH_MECHANISMS[mgf_hash][1]


PKCS11PrivateKey = PKCS11ECPrivateKey | PKCS11RSAPrivateKey
