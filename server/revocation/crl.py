"""Building one CRL (RFC 5280 §5): a full CRL of one CA, signed by that CA's key.

The CRL carries, as RFC 5280 and the CA/Browser Forum BRs (§7.2) ask:
- version 2, the CA's subject as issuer, thisUpdate and nextUpdate;
- authorityKeyIdentifier (§5.2.1: "Conforming CRL issuers MUST use the key identifier method,
  and MUST include this extension in all CRLs issued") and cRLNumber (§5.2.3: "CRL issuers
  conforming to this profile MUST include this extension in all CRLs and MUST mark this
  extension as non-critical"), monotonically increasing;
- issuingDistributionPoint (§5.2.5, critical) naming the same URL as the CRL distribution point
  of the certificates it covers, with onlyContainsUserCerts for an issuing CA (it signs only
  end-entity certificates) and onlyContainsCACerts for the root (whose CRL names no
  distribution point: see ``build_template``);
- one entry per revoked certificate: serial, revocation date, the reasonCode (§5.3.1; absent
  for unspecified, which "SHOULD be absent instead of using the unspecified (0) reasonCode
  value") and the invalidityDate (§5.3.2) when the administrator gave one.

The header and extensions are built and signed by cryptography as a template without entries;
the entries are encoded by ``der.py`` and spliced in, and the result signed again (see
``der.py`` for why). When there are no entries the template itself is the CRL: §5.1.2.6,
"When there are no revoked certificates, the revoked certificates list MUST be absent."

Delta CRLs (§5.2.4) are built here too: the Delta CRL Indicator names the base CRL's number,
the scope (issuing distribution point) is the base's, and a certificate released from hold
since the base is listed with reason removeFromCRL (§5.3.1: "removeFromCRL ... is used only in
delta CRLs").

Not done: indirect CRLs, and CRLs partitioned by reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from server.ca.keystore import CAKey, signing_hash
from server.model import RevocationReason, RevokedEntry
from server.revocation import der

# RFC 5280 §5.3.1 CRLReason values (7 is unused).
REASON_CODES: dict[RevocationReason, int] = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6,
    RevocationReason.REMOVE_FROM_CRL: 8,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
}
REASON_FLAGS: dict[RevocationReason, x509.ReasonFlags] = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.REMOVE_FROM_CRL: x509.ReasonFlags.remove_from_crl,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}

# Extension ::= SEQUENCE { extnID, extnValue OCTET STRING } (critical FALSE is the default,
# so DER leaves it out). id-ce-cRLReasons 2.5.29.21, id-ce-invalidityDate 2.5.29.24.
_REASON_OID = der.tlv(0x06, bytes((0x55, 0x1D, 0x15)))
_INVALIDITY_OID = der.tlv(0x06, bytes((0x55, 0x1D, 0x18)))
_REASON_EXTENSIONS: dict[RevocationReason, bytes] = {
    reason: der.tlv(
        der.SEQUENCE, _REASON_OID + der.tlv(der.OCTET_STRING, der.tlv(der.ENUMERATED, bytes((c,))))
    )
    for reason, c in REASON_CODES.items()
}


def encode_entry(entry: RevokedEntry) -> bytes:
    """One revokedCertificates element (RFC 5280 §5.1, TBSCertList)."""
    extensions = b""
    if entry.reason is not RevocationReason.UNSPECIFIED:
        extensions += _REASON_EXTENSIONS[entry.reason]
    if entry.invalidity_date is not None:
        value = der.tlv(der.OCTET_STRING, der.generalized_time(entry.invalidity_date))
        extensions += der.tlv(der.SEQUENCE, _INVALIDITY_OID + value)
    body = der.integer(entry.serial) + der.time(entry.revoked_at)
    if extensions:
        body += der.tlv(der.SEQUENCE, extensions)
    return der.tlv(der.SEQUENCE, body)


def encode_entries(entries: Iterable[RevokedEntry]) -> bytes:
    return b"".join([encode_entry(e) for e in entries])


@dataclass(slots=True)
class EncodedEntries:
    """A CRL's encoded entries, collected page by page; with partitions, each entry is also
    filed under its partition (``serial mod shards``), encoded once for both."""

    chunks: list[bytes]
    count: int
    shards: list[list[bytes]]

    @classmethod
    def empty(cls, shards: int) -> EncodedEntries:
        return cls([], 0, [[] for _ in range(shards)])

    def add(self, page: list[RevokedEntry]) -> None:
        encoded = [encode_entry(e) for e in page]
        self.chunks.append(b"".join(encoded))
        self.count += len(page)
        if self.shards:
            n = len(self.shards)
            for entry, der in zip(page, encoded, strict=True):
                self.shards[entry.serial % n].append(der)

    def full(self) -> tuple[bytes, int]:
        return b"".join(self.chunks), self.count

    def shard(self, k: int) -> tuple[bytes, int]:
        return b"".join(self.shards[k]), len(self.shards[k])


@dataclass(frozen=True, slots=True)
class CRLHeader:
    """Everything of a CRL but its entries."""

    issuer: x509.Name
    authority_key_id: bytes  # the CA's subject key identifier
    number: int
    this_update: datetime
    next_update: datetime
    distribution_point: str  # the URL certificates name in their CRL distribution point
    covers_ca_certificates: bool = False  # True for the root's CRL
    base_number: int | None = None  # a delta CRL: the cRLNumber of its base (complete) CRL
    freshest_url: str = ""  # a complete CRL: where its delta CRLs are


def build_template(header: CRLHeader, key: CAKey) -> bytes:
    """The signed CRL without entries, with every extension."""
    # The root's certificate names no CRL distribution point (nothing signs it but itself),
    # and a relying party checking the whole chain holds the root to its own CRL too
    # (openssl -crl_check_all): a distributionPoint there would put the root out of scope.
    full_name = (
        None
        if header.covers_ca_certificates
        else [x509.UniformResourceIdentifier(header.distribution_point)]
    )
    idp = x509.IssuingDistributionPoint(
        full_name=full_name,
        relative_name=None,
        only_contains_user_certs=not header.covers_ca_certificates,
        only_contains_ca_certs=header.covers_ca_certificates,
        only_some_reasons=None,
        indirect_crl=False,
        only_contains_attribute_certs=False,
    )
    aki = x509.AuthorityKeyIdentifier(header.authority_key_id, None, None)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(header.issuer)
        .last_update(header.this_update)
        .next_update(header.next_update)
        .add_extension(aki, critical=False)
        .add_extension(x509.CRLNumber(header.number), critical=False)
        # RFC 5280 §5.2.5: "this extension MUST be critical".
        .add_extension(idp, critical=True)
    )
    if header.base_number is not None:
        # RFC 5280 §5.2.4: "The delta CRL indicator is a critical CRL extension".
        builder = builder.add_extension(x509.DeltaCRLIndicator(header.base_number), critical=True)
    if header.freshest_url:
        # RFC 5280 §5.2.6: the freshest CRL extension "MUST be marked as non-critical".
        delta = x509.UniformResourceIdentifier(header.freshest_url)
        builder = builder.add_extension(
            x509.FreshestCRL([x509.DistributionPoint([delta], None, None, None)]), critical=False
        )
    return builder.sign(key, signing_hash(key)).public_bytes(Encoding.DER)


def splice_entries(template: bytes, entries: bytes, key: CAKey) -> bytes:
    """The template with ``entries`` (encoded revokedCertificates elements) put in its
    TBSCertList after nextUpdate, signed again with ``key``."""
    if not entries:
        return template
    tbs, algorithm, _ = der.elements(der.content(template))
    fields = list(der.elements(der.content(tbs)))
    # version, signature, issuer, thisUpdate, nextUpdate, then [0] crlExtensions.
    if len(fields) != 6 or fields[0][0] != der.INTEGER or fields[5][0] != 0xA0:
        raise ValueError("the CRL template does not have the expected TBSCertList fields")
    revoked = der.tlv(der.SEQUENCE, entries)
    new_tbs = der.tlv(der.SEQUENCE, b"".join(fields[:5]) + revoked + fields[5])
    signature = sign(key, new_tbs)
    return der.tlv(der.SEQUENCE, new_tbs + algorithm + der.tlv(der.BIT_STRING, b"\0" + signature))


def sign(key: CAKey, data: bytes) -> bytes:
    """Sign as cryptography's builders do with this key (and so as the template says)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    algorithm = signing_hash(key)
    assert algorithm is not None  # noqa: S101 - only Ed25519 keys have no separate hash
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(algorithm))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), algorithm)
    raise TypeError(f"cannot sign with a {type(key).__name__}")


def build_crl(header: CRLHeader, entries: bytes, key: CAKey) -> bytes:
    """A complete, signed CRL in DER."""
    return splice_entries(build_template(header, key), entries, key)
