"""The pkcsPKIEnvelope (RFC 8894 §3.2.2): CMS EnvelopedData with key transport to an RSA key.

RFC 8894 §3.5.2 and §2.9: the content-encryption algorithms are AES-128-CBC (which every
client and CA MUST support), AES-256-CBC, and, for legacy devices, DES3-CBC (and single DES,
which certforge only *reads*, when legacy algorithms are configured, never writes). The
content-encryption key is transported with RSA PKCS#1 v1.5 (``rsaEncryption``), the only key
transport SCEP clients use: SCEP has no way to envelope to an EC key.

asn1crypto reads and writes the CMS structures (cryptography cannot parse EnvelopedData);
cryptography does the RSA and the block ciphers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from asn1crypto import cms, core, parser
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, modes
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.serialization import load_der_public_key

from protocols.scep.failinfo import FailInfo, SCEPFailure
from server import csprng
from server.revocation import der


class ContentCipher(StrEnum):
    """Content-encryption algorithms, by asn1crypto's names for their OIDs."""

    AES128 = "aes128_cbc"
    AES256 = "aes256_cbc"
    DES3 = "tripledes_3key"  # des-ede3-cbc
    DES = "des"  # des-cbc: read only, with legacy algorithms


_KEY_BYTES = {
    ContentCipher.AES128: 16,
    ContentCipher.AES256: 32,
    ContentCipher.DES3: 24,
    ContentCipher.DES: 8,
}
LEGACY_CIPHERS = frozenset({ContentCipher.DES3, ContentCipher.DES})


def _cipher(alg: ContentCipher, key: bytes) -> CipherAlgorithm:
    if alg in (ContentCipher.AES128, ContentCipher.AES256):
        return AES(key)
    return TripleDES(key * 3 if alg is ContentCipher.DES else key)  # DES is DES3 with K1=K2=K3


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who can open an envelope: a certificate with an RSA key, and that key."""

    certificate: asn1_x509.Certificate
    key: rsa.RSAPrivateKey


def open_envelope(
    der: bytes, recipients: list[Recipient], *, legacy: bool
) -> tuple[bytes, ContentCipher]:
    """Decrypt a pkcsPKIEnvelope addressed to one of ``recipients`` (the RA or the CA); the
    content and the cipher it was sealed with (the CertRep is sealed with the same)."""
    try:
        info = cms.ContentInfo.load(der)
        if info["content_type"].native != "enveloped_data":
            raise SCEPFailure(FailInfo.BAD_REQUEST, "the pkcsPKIEnvelope is not EnvelopedData")
        env = info["content"]
        ktri, recipient = _our_recipient_info(env, recipients)
        eci = env["encrypted_content_info"]
        alg = _content_cipher(eci["content_encryption_algorithm"]["algorithm"].native, legacy)
        iv = eci["content_encryption_algorithm"].encryption_iv
        ciphertext = _encrypted_content(eci)
        key_transport = ktri["key_encryption_algorithm"]["algorithm"].native
        encrypted_key = ktri["encrypted_key"].native
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # RecursionError: a last net for structures nested deeper than the parsers recurse.
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, f"unreadable pkcsPKIEnvelope: {exc}") from exc
    if key_transport != "rsaes_pkcs1v15":
        raise SCEPFailure(FailInfo.BAD_ALG, "key transport must be rsaEncryption (PKCS#1 v1.5)")
    if not (
        isinstance(ciphertext, bytes) and isinstance(iv, bytes) and isinstance(encrypted_key, bytes)
    ):
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the envelope has no encrypted content")
    return _decrypt(alg, recipient.key, encrypted_key, iv, ciphertext), alg


def _encrypted_content(eci: cms.EncryptedContentInfo) -> bytes | None:
    """The encryptedContent octets, also in the constructed BER form some clients send (Go's
    pkcs7 puts a primitive OCTET STRING inside a constructed [0]), which asn1crypto's
    IMPLICIT field refuses: so the field is read with asn1crypto's parser."""
    data, pos = bytes(eci.contents), 0
    while pos < len(data):
        size = parser.peek(data[pos:])
        class_, method, tag, _, contents, _ = parser.parse(data[pos : pos + size])
        pos += size
        if class_ == 2 and tag == 0:  # [0] encryptedContent
            return bytes(contents) if method == 0 else _chunks(bytes(contents))
    return None


MAX_STRING_NESTING = 8  # clients send one level (Go's pkcs7); X.690 §8.7.3 sets no limit


def _chunks(data: bytes) -> bytes:
    """BER constructed string: the concatenated contents of its (OCTET STRING) segments, in
    order. A loop over a stack rather than recursion, and nesting beyond MAX_STRING_NESTING is
    refused: segments nested 1000 deep raised RecursionError."""
    out = bytearray()
    stack = [(data, 0)]  # (constructed contents, position in them)
    while stack:
        contents, pos = stack.pop()
        if pos >= len(contents):
            continue
        size = parser.peek(contents[pos:])
        _, method, _, _, inner, _ = parser.parse(contents[pos : pos + size])
        stack.append((contents, pos + size))
        if method == 0:
            out += inner
        elif len(stack) > MAX_STRING_NESTING:
            raise ValueError("the encrypted content's segments are nested too deeply")
        else:
            stack.append((bytes(inner), 0))
    return bytes(out)


def _our_recipient_info(
    env: cms.EnvelopedData, recipients: list[Recipient]
) -> tuple[cms.KeyTransRecipientInfo, Recipient]:
    for info in env["recipient_infos"]:
        if info.name != "ktri":
            continue
        rid = info.chosen["rid"]
        for recipient in recipients:
            if _identifies(rid, recipient.certificate):
                return info.chosen, recipient
    raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the envelope is not addressed to this CA or RA")


def _identifies(rid: cms.RecipientIdentifier, cert: asn1_x509.Certificate) -> bool:
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        return bool(
            ias["serial_number"].native == cert.serial_number
            and ias["issuer"].dump() == cert.issuer.dump()
        )
    return bool(rid.chosen.native == cert.key_identifier)


def _content_cipher(name: str, legacy: bool) -> ContentCipher:
    try:
        alg = ContentCipher(name)
    except ValueError:
        raise SCEPFailure(FailInfo.BAD_ALG, f"content encryption {name} is not supported") from None
    if alg in LEGACY_CIPHERS and not legacy:
        raise SCEPFailure(FailInfo.BAD_ALG, f"{alg} needs [scep] legacy_algorithms = true")
    return alg


def _decrypt(
    alg: ContentCipher, key: rsa.RSAPrivateKey, encrypted_key: bytes, iv: bytes, data: bytes
) -> bytes:
    # One failure for every way decryption can go wrong (bad padding of the RSA block or of
    # the content, wrong key length), so the answer is no padding oracle.
    try:
        cek = key.decrypt(encrypted_key, PKCS1v15())
        if len(cek) != _KEY_BYTES[alg]:
            raise ValueError("wrong content-encryption key length")
        decryptor = Cipher(_cipher(alg, cek), modes.CBC(iv)).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(64 if alg in LEGACY_CIPHERS else 128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "the envelope cannot be decrypted") from exc


def seal_envelope(content: bytes, recipient: asn1_x509.Certificate, alg: ContentCipher) -> bytes:
    """EnvelopedData of ``content`` (data) for ``recipient``'s RSA key: the CertRep's
    pkcsPKIEnvelope (RFC 8894 §3.3.2: encrypted to the requester's signing certificate)."""
    public_key = load_der_public_key(recipient.public_key.dump())
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise SCEPFailure(
            FailInfo.BAD_ALG, "the requester's certificate has no RSA key to envelope to"
        )
    if alg is ContentCipher.DES:
        alg = ContentCipher.AES128  # never write single DES
    cek = csprng.token_bytes(_KEY_BYTES[alg])
    iv = csprng.token_bytes(8 if alg in LEGACY_CIPHERS else 16)
    padder = padding.PKCS7(64 if alg in LEGACY_CIPHERS else 128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(_cipher(alg, cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    # Written directly in DER, like the CertRep around it (see certrep.py for why).
    ktri = der.tlv(
        der.SEQUENCE,
        der.integer(0)
        + der.tlv(
            der.SEQUENCE, bytes(recipient.issuer.dump()) + der.integer(recipient.serial_number)
        )
        + _RSA_ENCRYPTION
        + der.tlv(der.OCTET_STRING, public_key.encrypt(cek, PKCS1v15())),
    )
    content_algorithm = der.tlv(der.SEQUENCE, _CIPHER_OIDS[alg] + der.tlv(der.OCTET_STRING, iv))
    encrypted_content_info = der.tlv(
        der.SEQUENCE,
        _DATA + content_algorithm + der.tlv(0x80, ciphertext),  # [0] IMPLICIT, primitive
    )
    enveloped = der.tlv(der.SEQUENCE, der.integer(0) + der.tlv(0x31, ktri) + encrypted_content_info)
    return der.tlv(der.SEQUENCE, _ENVELOPED_DATA + der.tlv(0xA0, enveloped))


def _oid(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


_DATA = _oid("1.2.840.113549.1.7.1")
_ENVELOPED_DATA = _oid("1.2.840.113549.1.7.3")
_RSA_ENCRYPTION = bytes(cms.KeyEncryptionAlgorithm({"algorithm": "rsaes_pkcs1v15"}).dump())
_CIPHER_OIDS = {
    ContentCipher.AES128: _oid("2.16.840.1.101.3.4.1.2"),
    ContentCipher.AES256: _oid("2.16.840.1.101.3.4.1.42"),
    ContentCipher.DES3: _oid("1.2.840.113549.3.7"),
}


def degenerate_crl(crl_der: bytes) -> bytes:
    """A degenerate SignedData holding one CRL and no signers (RFC 8894 §3.3.4; cryptography
    writes certificates-only PKCS#7 but not CRLs)."""
    signed = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [],
            "encap_content_info": {"content_type": "data"},
            "crls": [asn1_crl.CertificateList.load(crl_der)],
            "signer_infos": [],
        }
    )
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": signed}).dump())
