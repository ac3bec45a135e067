"""Encrypted server-generated keys (RFC 7030 §4.4.1.2, §4.4.2), built with asn1crypto.

When a serverkeygen request carries the AsymmetricDecryptKeyIdentifier attribute, the key is
returned as ``application/pkcs7-mime; smime-type=server-generated-key``: RFC 7030 §4.4.2, "The
private key data MUST be ... an asymmetric key package" (RFC 5958), in a SignedData "signed
by the party that generated the private key" (here: the EST server, with its TLS certificate
and key), "further protected by placing it inside of an EnvelopedData". So:

    EnvelopedData( SignedData( AsymmetricKeyPackage = SEQUENCE OF OneAsymmetricKey ) )

The EnvelopedData's content is encrypted with AES-256-CBC under a fresh key, and that key
reaches the one recipient the client named (by its SubjectKeyIdentifier) by:

- RSA: KeyTransRecipientInfo, RSAES-OAEP with SHA-256 (RFC 8017, RFC 4055);
- EC (P-256, P-384, P-521): KeyAgreeRecipientInfo, ephemeral-static ECDH with the ANSI X9.63
  KDF (SHA-256) and AES-256 key wrap (RFC 5753 §3.1, dhSinglePass-stdDH-sha256kdf-scheme).

cryptography's ``PKCS7EnvelopeBuilder`` would do the RSA case, but it can neither carry a key
package (only id-data content) nor agree a key with an EC recipient, hence asn1crypto here;
the cryptographic operations themselves are all cryptography's.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import algos, cms, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from server.errors import BadPublicKey, Forbidden, Malformed

# RFC 5958 §3: id-ct-KP-aKeyPackage, the content type of an AsymmetricKeyPackage.
A_KEY_PACKAGE = "2.16.840.1.101.2.1.2.78.5"
# RFC 5753 §7.1.4: dhSinglePass-stdDH-sha256kdf-scheme.
STD_DH_SHA256_KDF = "1.3.132.1.11.1"


class _SharedInfo(core.Sequence):  # type: ignore[misc] # asn1crypto has no type hints
    """ECC-CMS-SharedInfo (RFC 5753 §7.2): the X9.63 KDF's shared info."""

    _fields = [  # noqa: RUF012
        ("key_info", cms.KeyEncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


RecipientKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
SignerKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def subject_key_id(cert: x509.Certificate) -> bytes:
    """The certificate's SubjectKeyIdentifier; RFC 5280 §4.2.1.2 method 1 when it has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def recipient_for(key_id: bytes, client: x509.Certificate | None) -> x509.Certificate:
    """RFC 7030 §4.4.1.2: the certificate whose key the new key is encrypted to.

    "Distribution of the key specified by the AsymmetricDecryptKeyIdentifier to the key
    generator and the client is outside the scope of this document": certforge knows one such
    key, the verified TLS client certificate of the request (an IDevID, or a certificate this
    CA issued), so the identifier must name it. Otherwise, RFC 7030: the server "MUST
    terminate the request with an error". "If the key identified is bound to an X.509
    certificate, then the key MUST either explicitly support keyTransport or keyAgreement or
    its use MUST be unrestricted."
    """
    if client is None or subject_key_id(client) != key_id:
        raise Malformed(
            "the AsymmetricDecryptKeyIdentifier must name the TLS client certificate of the "
            "request (its SubjectKeyIdentifier): it is the only key certforge can encrypt to"
        )
    public = client.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        usage, name = "key_encipherment", "keyEncipherment"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        usage, name = "key_agreement", "keyAgreement"
    else:
        raise BadPublicKey("certforge encrypts server-generated keys to RSA or EC keys only")
    try:
        key_usage = client.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return client  # unrestricted
    if not getattr(key_usage, usage):
        raise Forbidden(f"the key-encryption certificate's key usage does not allow {name}")
    return client


def load_signer(cert_path: Path, key_path: Path) -> tuple[SignerKey, list[x509.Certificate]]:
    """The EST server's TLS key and chain: it generated the key, so it signs the package."""
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    key = load_pem_private_key(key_path.read_bytes(), None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"the server's TLS key is a {type(key).__name__}")
    return key, chain


def server_generated_key(
    pkcs8_der: bytes,
    *,
    recipient: x509.Certificate,
    signer: SignerKey,
    signer_chain: list[x509.Certificate],
) -> bytes:
    """The DER ContentInfo of EnvelopedData(SignedData(AsymmetricKeyPackage))."""
    package = core.SequenceOf(spec=core.Any, value=[core.Any.load(pkcs8_der)]).dump()
    signed = _signed_data(package, signer, signer_chain)
    return _enveloped(signed, recipient)


def _signed_data(content: bytes, key: SignerKey, chain: list[x509.Certificate]) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(content)
    attributes = [
        cms.CMSAttribute({"type": "content_type", "values": [A_KEY_PACKAGE]}),
        cms.CMSAttribute({"type": "message_digest", "values": [digest.finalize()]}),
        cms.CMSAttribute(
            {"type": "signing_time", "values": [cms.Time({"utc_time": datetime.now(UTC)})]}
        ),
    ]
    # DER orders a SET OF by encoding; a verifier re-encodes the set before checking it.
    signed_attrs = cms.CMSAttributes(sorted(attributes, key=lambda a: a.dump()))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signature_algorithm = "sha256_ecdsa"
    else:
        signature = key.sign(signed_attrs.dump(), asym_padding.PKCS1v15(), hashes.SHA256())
        signature_algorithm = "sha256_rsa"
    leaf = chain[0]
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": {
                        "issuer": _name(leaf.issuer),
                        "serial_number": leaf.serial_number,
                    }
                }
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": signature_algorithm},
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            # RFC 5652 §5.1: version 3 when the content is not id-data.
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": A_KEY_PACKAGE, "content": content},
            "certificates": [
                cms.CertificateChoices.load(c.public_bytes(Encoding.DER)) for c in chain
            ],
            "signer_infos": [signer_info],
        }
    )
    return bytes(signed_data.dump())


def _name(name: x509.Name) -> asn1_x509.Name:
    return asn1_x509.Name.load(name.public_bytes())


def _enveloped(signed_data: bytes, recipient: x509.Certificate) -> bytes:
    """RFC 5652 §6: the DER ``signed_data`` encrypted for ``recipient`` (the content type
    goes in the EncryptedContentInfo; the content is the SignedData itself)."""
    cek, iv = os.urandom(32), os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(signed_data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    enveloped = cms.EnvelopedData(
        {
            "version": "v2",
            "recipient_infos": [_recipient_info(cek, recipient)],
            "encrypted_content_info": {
                "content_type": "signed_data",
                "content_encryption_algorithm": {"algorithm": "aes256_cbc", "parameters": iv},
                "encrypted_content": ciphertext,
            },
        }
    )
    return bytes(cms.ContentInfo({"content_type": "enveloped_data", "content": enveloped}).dump())


def _recipient_info(cek: bytes, recipient: x509.Certificate) -> cms.RecipientInfo:
    public = recipient.public_key()
    ski = subject_key_id(recipient)
    if isinstance(public, rsa.RSAPublicKey):
        return _key_transport(cek, public, ski)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return _key_agreement(cek, public, ski)
    raise TypeError(type(public).__name__)


def _key_transport(cek: bytes, public: rsa.RSAPublicKey, ski: bytes) -> cms.RecipientInfo:
    oaep = asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    params = algos.RSAESOAEPParams(
        {
            "hash_algorithm": {"algorithm": "sha256"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        }
    )
    return cms.RecipientInfo(
        name="ktri",
        value={
            "version": "v2",  # RFC 5652 §6.2.1: v2 with a subjectKeyIdentifier
            "rid": cms.RecipientIdentifier(name="subject_key_identifier", value=ski),
            "key_encryption_algorithm": {"algorithm": "rsaes_oaep", "parameters": params},
            "encrypted_key": public.encrypt(cek, oaep),
        },
    )


def _key_agreement(cek: bytes, public: ec.EllipticCurvePublicKey, ski: bytes) -> cms.RecipientInfo:
    ephemeral = ec.generate_private_key(public.curve)
    wrap = cms.KeyEncryptionAlgorithm({"algorithm": "aes256_wrap"})
    shared_info = _SharedInfo({"key_info": wrap, "supp_pub_info": (256).to_bytes(4, "big")}).dump()
    kek = X963KDF(hashes.SHA256(), 32, shared_info).derive(ephemeral.exchange(ec.ECDH(), public))
    point = ephemeral.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    originator = keys.PublicKeyInfo({"algorithm": {"algorithm": "ec"}, "public_key": point})
    return cms.RecipientInfo(
        name="kari",
        value={
            "version": "v3",
            "originator": cms.OriginatorIdentifierOrKey(name="originator_key", value=originator),
            "key_encryption_algorithm": {"algorithm": STD_DH_SHA256_KDF, "parameters": wrap},
            "recipient_encrypted_keys": [
                {
                    "rid": cms.KeyAgreementRecipientIdentifier(
                        name="r_key_id", value={"subject_key_identifier": ski}
                    ),
                    "encrypted_key": aes_key_wrap(kek, cek),
                }
            ],
        },
    )
