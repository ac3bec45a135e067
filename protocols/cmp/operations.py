"""One PKIMessage in, one PKIMessage out: header checks, authentication, the body's
operation, and the answer's protection (RFC 9483 §3, §4).

``Operations.handle`` never raises: every refusal becomes an error message (RFC 9483 §3.6.4)
with its PKIFailureInfo, protected like the request when the request's protection verified
(the same MAC secret, or signed), else signed with the response key, so a client that
accepts unprotected errors (``openssl cmp -unprotected_errors``) still reads the failInfo.

Authentication (RFC 9483 §3.2): MAC-based with a shared secret named by the senderKID
(for a later message of a transaction, the secret the transaction keeps), or
signature-based with the first certificate of extraCerts, which must be a valid,
unrevoked certificate of this CA or one issued directly by a configured trust anchor, and
whose subject must be the header's sender (RFC 9483 §3.1). Unprotected requests are refused.

The other operations here: rr (§4.2: revoke the signer's own certificate) and genm (§4.3:
caCerts, rootCaCert, certReqTemplate, crlStatusList).
"""

from __future__ import annotations

import hashlib
import logging

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280, rfc9480

from protocols.cmp.deps import Answer, Auth, CMPDeps, MACAuth, SignerAuth
from protocols.cmp.enroll import Enrollment
from protocols.cmp.failinfo import CMPFailure, FailInfo, PKIStatus, failure_for
from protocols.cmp.messages import (
    Body,
    HeaderRules,
    Message,
    Reply,
    RevStatus,
    certificates_value,
    check_header,
    check_time,
    encode_message,
    error_body,
    genp_body,
    new_header,
    protected_part,
    rp_body,
    set_protection_alg,
)
from protocols.cmp.protection import (
    compute_mac,
    is_mac,
    mac_algorithm,
    sign,
    signature_algorithm,
    verify_mac,
    verify_signature,
)
from protocols.cmp.secrets import SharedSecret
from protocols.cmp.transactions import State, Transaction, Transactions
from server.errors import CertforgeError, Conflict, NotFound
from server.model import AuthMethod, CertificateRecord, CertStatus, Requester, RevocationReason

log = logging.getLogger("certforge.cmp")

ID_CE_CRL_REASONS = "2.5.29.21"
_IT = "1.3.6.1.5.5.7.4."
IT_CA_CERTS, IT_ROOT_CA_KEY_UPDATE, IT_CERT_REQ_TEMPLATE = _IT + "17", _IT + "18", _IT + "19"
IT_ROOT_CA_CERT, IT_CRL_STATUS_LIST, IT_CRLS = _IT + "20", _IT + "22", _IT + "23"
# RFC 5280 §5.3.1 CRLReason codes a client may give (7 is unused; removeFromCRL, 8, only
# releases a hold, which is an administrator's).
_REASONS = {
    **{code: reason for code, reason in enumerate(RevocationReason) if code <= 6},
    9: RevocationReason.PRIVILEGE_WITHDRAWN,
    10: RevocationReason.AA_COMPROMISE,
}


class Operations:
    def __init__(self, deps: CMPDeps) -> None:
        self._d = deps
        self._tx = Transactions(deps.store)
        self._enroll = Enrollment(deps, self._tx)
        self._signer_der = tuple(c.public_bytes(Encoding.DER) for c in deps.signer_chain)
        self._name = deps.signer_chain[0].subject.public_bytes()
        self._signer_kid = _ski(deps.signer_chain[0])

    async def handle(self, msg: Message, *, profile: str | None) -> bytes:
        auth: Auth | None = None
        try:
            check_header(msg.header)
            assert msg.header.transaction_id is not None  # noqa: S101 - check_header did
            tx = await self._tx.find(msg.header.transaction_id)
            auth = await self._authenticate(msg, tx)
            check_time(msg.header, HeaderRules(self._d.clock.now(), self._d.max_clock_skew))
            answer = await self._dispatch(msg, auth, tx, profile)
        except CMPFailure as exc:
            answer = _error(exc)
        except CertforgeError as exc:
            log.info("cmp request refused: %s", exc.detail, exc_info=exc.__cause__ is not None)
            answer = _error(failure_for(exc))
        except Exception:
            log.exception("cmp request failed")
            answer = _error(CMPFailure(FailInfo.SYSTEM_FAILURE, "internal error"))
        try:
            return self._protect(msg, auth, answer)
        except Exception:
            # The answer itself could not be built: the failure is ours, and still a CMP one.
            log.exception("cmp answer could not be built")
            return self._protect(msg, None, _error(CMPFailure(FailInfo.SYSTEM_FAILURE, "error")))

    async def _dispatch(
        self, msg: Message, auth: Auth, tx: Transaction | None, profile: str | None
    ) -> Answer:
        match msg.body_type:
            case Body.IR | Body.CR | Body.KUR:
                return await self._enroll.crmf(msg, auth, tx, profile)
            case Body.P10CR:
                return await self._enroll.p10(msg, auth, tx, profile)
            case Body.CERT_CONF:
                return await self._enroll.confirm(msg, auth, tx)
            case Body.POLL_REQ:
                return await self._enroll.poll(msg, auth, tx)
            case Body.RR:
                return await self._revoke(msg, auth, tx)
            case Body.GENM:
                return await self._general(msg)
            case other:
                raise CMPFailure(FailInfo.BAD_REQUEST, f"{other} messages are not accepted here")

    # -------------------------------------------------------- authentication
    async def _authenticate(self, msg: Message, tx: Transaction | None) -> Auth:
        alg, protection = msg.header.protection_alg, msg.protection
        if alg is None or protection is None:
            # RFC 9483 §3.2: requests are protected, by a MAC or a signature.
            raise CMPFailure(FailInfo.BAD_MESSAGE_CHECK, "the request is not protected")
        if is_mac(alg):
            reference = msg.header.sender_kid
            if not reference:
                # RFC 9483 §3.1: with MAC protection, senderKID names the shared secret.
                raise CMPFailure(FailInfo.BAD_MESSAGE_CHECK, "senderKID must name the secret")
            secret, from_tx = await self._secret(reference, tx)
            scheme = verify_mac(alg, protection, secret.secret, msg.protected_part)
            return MACAuth(reference, secret, scheme, from_tx)
        if not msg.extra_certs:
            # RFC 9483 §3.3: the first certificate of extraCerts is the protection cert.
            raise CMPFailure(FailInfo.SIGNER_NOT_TRUSTED, "extraCerts holds no certificate")
        cert = verify_signature(alg, protection, msg.extra_certs[0], msg.protected_part)
        if msg.header.sender_name != cert.subject.public_bytes():
            # RFC 9483 §3.1: the sender "MUST" be the subject of the protection certificate.
            raise CMPFailure(FailInfo.BAD_MESSAGE_CHECK, "the sender is not the signer")
        record = await self._trust(cert)
        spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return SignerAuth(cert, hashlib.sha256(spki).hexdigest(), record)

    async def _secret(self, reference: bytes, tx: Transaction | None) -> tuple[SharedSecret, bool]:
        if tx is not None and tx.mac_reference == reference.hex():
            kept = self._enroll.secret_of(tx)
            if kept is not None:
                return SharedSecret(kept, tx.profile), True
        secret = await self._d.secret_for(reference)
        if secret is None:
            raise CMPFailure(FailInfo.NOT_AUTHORIZED, "the secret is unknown, used or expired")
        return secret, False

    async def _trust(self, cert: x509.Certificate) -> CertificateRecord | None:
        now = self._d.clock.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise CMPFailure(FailInfo.SIGNER_NOT_TRUSTED, "the protection certificate is expired")
        for ca in self._d.cas.issuers.values():
            if _issued_by(cert, ca.certificate):
                return await self._our_certificate(cert, ca.name)
        if any(_issued_by(cert, anchor) for anchor in self._d.trust_anchors):
            return None
        raise CMPFailure(FailInfo.SIGNER_NOT_TRUSTED, "the protection certificate is not trusted")

    async def _our_certificate(self, cert: x509.Certificate, issuer: str) -> CertificateRecord:
        try:
            record = await self._d.store.get_certificate(cert.serial_number)
        except NotFound:
            record = None
        if (
            record is None
            or record.issuer != issuer
            or record.der != cert.public_bytes(Encoding.DER)
        ):
            raise CMPFailure(FailInfo.SIGNER_NOT_TRUSTED, "the protection certificate is unknown")
        if record.status is CertStatus.REVOKED:
            raise CMPFailure(FailInfo.CERT_REVOKED, "the protection certificate is revoked")
        return record

    # ----------------------------------------------------------- protection
    def _protect(self, msg: Message, auth: Auth | None, answer: Answer) -> bytes:
        reply = Reply(
            sender_name=self._name,
            now=self._d.clock.now(),
            sender_kid=None if isinstance(auth, MACAuth) else self._signer_kid,
            implicit_confirm=answer.implicit_confirm,
            sender_nonce=answer.sender_nonce,
        )
        header = new_header(msg.header, reply)
        if isinstance(auth, MACAuth):
            # RFC 9483 §3.2: an answer to a MAC-protected request is MAC-protected alike.
            oid, params, salt = mac_algorithm(auth.scheme)
            set_protection_alg(header, oid, params)
            data = protected_part(header, answer.body)
            protection = compute_mac(auth.scheme, salt, auth.secret.secret, data)
            extra = answer.extra_certs
        else:
            set_protection_alg(header, signature_algorithm(self._d.signer_key), None)
            protection = sign(self._d.signer_key, protected_part(header, answer.body))
            # RFC 9483 §3.3: the protection certificate first, then its chain.
            extra = self._signer_der + tuple(
                c for c in answer.extra_certs if c not in self._signer_der
            )
        return encode_message(header, answer.body, protection=protection, extra_certs=extra)

    # -------------------------------------------------------------------- rr
    async def _revoke(self, msg: Message, auth: Auth, tx: Transaction | None) -> Answer:
        """RFC 9483 §4.2: an EE revokes its own certificate, signing with it."""
        if tx is not None:
            raise CMPFailure(FailInfo.TRANSACTION_ID_IN_USE, "this transactionID is in use")
        if not isinstance(auth, SignerAuth) or auth.record is None:
            raise CMPFailure(FailInfo.NOT_AUTHORIZED, "an rr must be signed with the certificate")
        if len(msg.body) != 1:
            raise CMPFailure(FailInfo.BAD_REQUEST, "RFC 9483 §4.2 allows one RevDetails")
        details = msg.body[0]
        template = details["certDetails"]
        # RFC 9483 §4.2: certDetails "MUST" carry the issuer and serialNumber.
        if not template["serialNumber"].isValue or not template["issuer"].isValue:
            raise CMPFailure(FailInfo.BAD_CERT_ID, "certDetails needs issuer and serialNumber")
        issuer = encoder.encode(template["issuer"]["rdnSequence"])
        record = auth.record
        if int(template["serialNumber"]) != record.serial or issuer != _issuer_name(auth):
            raise CMPFailure(FailInfo.NOT_AUTHORIZED, "only the signer's certificate is revoked")
        reason = _reason(details)
        now = self._d.clock.now()
        opened = await self._tx.open(_rr_transaction(msg, auth), now=now)
        try:
            by = Requester(AuthMethod.CLIENT_CERT, auth.certificate.subject.rfc4514_string())
            await self._d.engine.revoke(record.serial, reason=reason, by=by)
        except Conflict:
            raise CMPFailure(FailInfo.CERT_REVOKED, "the certificate is revoked already") from None
        except BaseException:
            await self._tx.forget(opened)
            raise
        return Answer(rp_body([RevStatus(PKIStatus.ACCEPTED)]))

    # ------------------------------------------------------------------ genm
    async def _general(self, msg: Message) -> Answer:
        """RFC 9483 §4.3: each asked infoType answered; an unknown one is left out
        (RFC 4210 §5.3.19: the receiver ignores what it does not understand)."""
        items: list[tuple[str, bytes | None]] = []
        for item in msg.body:
            asked = str(item["infoType"])
            if asked == IT_CA_CERTS:
                items.append((IT_CA_CERTS, certificates_value(self._ca_certificates())))
            elif asked == IT_ROOT_CA_CERT:
                # RFC 9483 §4.3.2: no root CA update to announce: rootCaKeyUpdate, absent.
                items.append((IT_ROOT_CA_KEY_UPDATE, None))
            elif asked == IT_CERT_REQ_TEMPLATE:
                # RFC 9483 §4.3.3: no template is required: the infoValue is absent.
                items.append((IT_CERT_REQ_TEMPLATE, None))
            elif asked == IT_CRL_STATUS_LIST:
                items.append((IT_CRLS, await self._crls()))
        return Answer(genp_body(items))

    def _ca_certificates(self) -> list[bytes]:
        ders: list[bytes] = []
        for ca in self._d.cas.issuers.values():
            ders.extend(d for d in ca.chain_der if d not in ders)
        ders.append(self._d.cas.root.public_bytes(Encoding.DER))
        return ders

    async def _crls(self) -> bytes | None:
        # RFC 9483 §4.3.4: the current CRLs; absent when there is none to give.
        crls = await self._d.crls() if self._d.crls is not None else ()
        if not crls:
            return None
        value = rfc9480.CRLsValue()
        for der in crls:
            value.append(decoder.decode(der, asn1Spec=rfc5280.CertificateList())[0])
        return bytes(encoder.encode(value))


def _error(exc: CMPFailure) -> Answer:
    return Answer(error_body(exc.status, exc.fail_info, exc.detail))


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _issuer_name(auth: SignerAuth) -> bytes:
    return auth.certificate.issuer.public_bytes()


def _ski(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


def _reason(details: object) -> RevocationReason:
    extensions = details["crlEntryDetails"]  # type: ignore[index]
    if not extensions.isValue:
        return RevocationReason.UNSPECIFIED
    for ext in extensions:
        if str(ext["extnID"]) == ID_CE_CRL_REASONS:
            code = int(decoder.decode(ext["extnValue"].asOctets(), asn1Spec=univ.Enumerated())[0])
            if code in _REASONS:
                return _REASONS[code]
            raise CMPFailure(FailInfo.BAD_REQUEST, f"revocation reason {code} is not accepted")
    return RevocationReason.UNSPECIFIED


def _rr_transaction(msg: Message, auth: SignerAuth) -> Transaction:
    assert msg.header.transaction_id is not None  # noqa: S101 - check_header ensured it
    return Transaction(
        id=msg.header.transaction_id.hex(),
        state=State.DONE,
        body=msg.body_type,
        profile="",
        last_nonce="",
        signer_key=auth.key_sha256,
    )
