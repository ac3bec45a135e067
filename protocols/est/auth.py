"""Who is asking: TLS client certificates and HTTP Basic (RFC 7030 §3.2.3, §3.3.2).

Three proofs, and the profile says which it accepts (``[profiles.NAME.auth] est``):

``client_cert``
    The TLS client certificate. The listener asks every client for one but lets the handshake
    finish whatever it is (``server.clientauth``), so the verdict is given here, as an HTTP 403
    with the reason. Accepted: a certificate this CA issued (signature by one of its issuing
    CAs, recorded in the store, unexpired, unrevoked) or one issued directly by a certificate
    in ``[est] trust_anchors`` (a manufacturer's IDevID CA), unexpired. Every certificate in
    those files is an anchor, intermediates included. A device under an intermediate CA that
    is not listed is accepted when the client sends that intermediate in its handshake and it
    is issued by an anchor (read with ``server.clientauth.peer_chain``; a resumed TLS session
    keeps no chain, so there the intermediate must be listed).
``est_basic``
    HTTP Basic with a user from ``certforge est user add`` (``protocols.est.users``).
``challenge_password``
    HTTP Basic whose password is a one-time password from the challenge service that SCEP
    shares (``certforge scep challenge``); the user name is not checked. It is redeemed only
    once the request itself has been verified, so a bad request does not use it up.

When Basic credentials are sent they decide who the requester is (a certificate sent with them
must still be trusted, and is recorded with the request). A sent certificate that is not
trusted is a 403 even when Basic would have been enough: the client claimed an identity that
does not hold.

A client certificate must be one for TLS client authentication (RFC 5280 §4.2.1.12: with an
extendedKeyUsage, clientAuth or anyExtendedKeyUsage), whatever it is used for; OpenSSL's own
verification refuses the others as client certificates too. And it vouches only for what it
certifies: its subject and its subject alternative names (``certified_names``), so a request
it authenticates may not ask for other names (``handlers.own_identity``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from protocols.est.context import EST, ESTContext
from protocols.est.users import verify_password
from server.clientauth import peer_chain
from server.config import ProfileConfig
from server.errors import Forbidden, Malformed, NotFound, Unauthorized
from server.keys import CAS, STORE
from server.model import AuthMethod, CertificateRecord, CertStatus, Identifier, Requester

PROTOCOL = "est"


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    certificate: x509.Certificate
    record: CertificateRecord | None  # when this CA issued it
    issuer: str  # RFC 4514 name of the CA that vouches for it

    @property
    def identity(self) -> str:
        serial = format(self.certificate.serial_number, "x")
        return f"{self.certificate.subject.rfc4514_string()} (serial {serial}, {self.issuer})"


@dataclass(frozen=True, slots=True)
class Proof:
    """Who the requester is, and a one-time password still to be redeemed, if that is how."""

    requester: Requester
    client_certificate: ClientCertificate | None = None
    challenge: str | None = None


def ssl_object(request: web.Request) -> ssl.SSLObject | None:
    transport = request.transport
    return None if transport is None else transport.get_extra_info("ssl_object")


def tls_unique(request: web.Request) -> bytes | None:
    """The connection's tls-unique (RFC 5929); None on TLS 1.3, which has none (RFC 9266)."""
    tls = ssl_object(request)
    if tls is None or tls.version() != "TLSv1.2":
        return None
    return tls.get_channel_binding("tls-unique")


async def client_certificate(request: web.Request, now: datetime) -> ClientCertificate | None:
    """The TLS client certificate, verified; None when the client sent none."""
    tls = ssl_object(request)
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    if not der:
        return None
    est = request.app[EST]
    fingerprint = hashlib.sha256(der).digest()
    known = est.known_certificate(fingerprint)
    if known is not None and _is_current(known.certificate, now):
        return known
    verdict = await _verify(request, est, der, now)
    est.remember_certificate(fingerprint, verdict)
    return verdict


def _is_current(cert: x509.Certificate, now: datetime) -> bool:
    # RFC 5280 §6.1.3 (a)(2): the certificate validity period includes the current time.
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


async def _verify(
    request: web.Request, est: ESTContext, der: bytes, now: datetime
) -> ClientCertificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.subject.rfc4514_string()  # names are parsed lazily: fail here, not later
        cert.issuer.rfc4514_string()
    except ValueError:
        raise Forbidden("the TLS client certificate cannot be parsed") from None
    if not _is_current(cert, now):
        raise Forbidden("the TLS client certificate has expired or is not yet valid")
    if not is_for_client_auth(cert):
        raise Forbidden(
            "the TLS client certificate is not for TLS client authentication "
            "(its extendedKeyUsage has neither clientAuth nor anyExtendedKeyUsage)"
        )
    for ca in request.config_dict[CAS].issuers.values():
        if cert.issuer == ca.subject and _is_signed_by(est, der, cert, ca.certificate):
            return ClientCertificate(cert, await _ours(request, cert), ca.subject.rfc4514_string())
    for anchor in est.anchors:
        if cert.issuer == anchor.subject and _is_signed_by(est, der, cert, anchor):
            if not _is_current(anchor, now):
                raise Forbidden("the trust anchor of the TLS client certificate has expired")
            return ClientCertificate(cert, None, anchor.subject.rfc4514_string())
    if (via := _via_intermediate(request, est, der, cert, now)) is not None:
        return via
    raise Forbidden(
        "the TLS client certificate is not issued by this CA or by a configured trust anchor"
    )


_CLIENT_AUTH = frozenset(
    {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)


def is_for_client_auth(cert: x509.Certificate) -> bool:
    """RFC 5280 §4.2.1.12: "If the extension is present, then the certificate MUST only be used
    for one of the purposes indicated"; without it, any purpose."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    except (ValueError, x509.DuplicateExtension):
        return False  # a certificate whose purposes cannot be read proves none
    return not _CLIENT_AUTH.isdisjoint(eku)


def certified_names(cert: ClientCertificate) -> frozenset[Identifier]:
    """The subject alternative names the certificate certifies: the store's record of them
    for a certificate of this CA, else those of its extension that certforge can issue."""
    if cert.record is not None:
        return frozenset(Identifier.parse(s) for s in cert.record.sans)
    try:
        san = cert.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return frozenset()
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        return frozenset()  # nothing readable is certified
    names: set[Identifier] = set()
    for name in san.value:
        try:
            names.add(Identifier.from_general_name(name))
        except Malformed:
            continue  # an otherName (an IDevID's hardwareModuleName): not a name to ask for
    return frozenset(names)


def _via_intermediate(
    request: web.Request, est: ESTContext, der: bytes, cert: x509.Certificate, now: datetime
) -> ClientCertificate | None:
    """anchor -> an intermediate CA the client sent in its handshake -> the certificate (RFC
    5280 §6.1 with one intermediate: signatures, validity, cA and keyCertSign checked)."""
    tls = ssl_object(request)
    for intermediate_der in peer_chain(tls) if est.anchors and tls is not None else []:
        try:
            intermediate = x509.load_der_x509_certificate(intermediate_der)
            if not (
                cert.issuer == intermediate.subject
                and _is_current(intermediate, now)
                and _may_issue(intermediate)
                and _is_signed_by(est, der, cert, intermediate)
            ):
                continue
        except ValueError:
            continue  # a malformed certificate the client sent along: not a path
        for anchor in est.anchors:
            if (
                intermediate.issuer == anchor.subject
                and _is_current(anchor, now)
                and _is_signed_by(est, intermediate_der, intermediate, anchor)
            ):
                under = anchor.subject.rfc4514_string()
                issuer = f"{intermediate.subject.rfc4514_string()} under {under}"
                return ClientCertificate(cert, None, issuer)
    return None


def _may_issue(ca: x509.Certificate) -> bool:
    """RFC 5280 §6.1.4 (k), (n): an intermediate must be a CA allowed to sign certificates."""
    try:
        if not ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        return ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True


def _is_signed_by(
    est: ESTContext, der: bytes, cert: x509.Certificate, issuer: x509.Certificate
) -> bool:
    fingerprint = (
        hashlib.sha256(der).digest() + hashlib.sha256(issuer.tbs_certificate_bytes).digest()
    )
    if fingerprint in est.chained:
        return True
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    if len(est.chained) > 10_000:
        est.chained.clear()
    est.chained.add(fingerprint)
    return True


async def _ours(request: web.Request, cert: x509.Certificate) -> CertificateRecord:
    """The store's record of a certificate this CA signed: it must be there, and valid."""
    try:
        record = await request.config_dict[STORE].get_certificate(cert.serial_number)
    except NotFound:
        raise Forbidden("the TLS client certificate is unknown to this CA") from None
    if record.der != cert.public_bytes(Encoding.DER):
        raise Forbidden("the TLS client certificate is unknown to this CA")
    if record.status is not CertStatus.VALID:
        raise Forbidden("the TLS client certificate has been revoked")
    return record


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """RFC 7617: ``Authorization: Basic base64(user-id ":" password)``; None if absent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("EST accepts HTTP Basic authentication (or a TLS client certificate)")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unauthorized("the Basic credentials are not base64 of user:password") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise Unauthorized("the Basic credentials are not base64 of user:password")
    return user, password


def challenge_identity(password: str) -> str:
    """Names a one-time password's requester without keeping the password."""
    return "one-time password " + hashlib.sha256(password.encode()).hexdigest()[:16]


async def identify(request: web.Request, profile: ProfileConfig, now: datetime) -> Proof:
    """The requester of a simpleenroll or serverkeygen, by a proof the profile accepts."""
    cert = await client_certificate(request, now)
    basic = basic_credentials(request)
    accepted = profile.auth.get(PROTOCOL, ())
    if basic is not None:
        return await _by_password(request, accepted, basic, cert)
    if cert is None:
        raise Unauthorized("EST needs HTTP Basic credentials or a TLS client certificate")
    if str(AuthMethod.CLIENT_CERT) not in accepted:
        raise Forbidden(f"profile {profile.name} does not accept TLS client certificates")
    return Proof(Requester(AuthMethod.CLIENT_CERT, cert.identity), client_certificate=cert)


async def _by_password(
    request: web.Request,
    accepted: tuple[str, ...],
    basic: tuple[str, str],
    cert: ClientCertificate | None,
) -> Proof:
    user, password = basic
    if str(AuthMethod.EST_BASIC) in accepted and await verify_password(
        request.config_dict[STORE], request.app[EST].verified, user, password
    ):
        return Proof(Requester(AuthMethod.EST_BASIC, user), client_certificate=cert)
    if str(AuthMethod.CHALLENGE_PASSWORD) in accepted:
        requester = Requester(AuthMethod.CHALLENGE_PASSWORD, challenge_identity(password))
        return Proof(requester, client_certificate=cert, challenge=password)
    if str(AuthMethod.EST_BASIC) in accepted:
        raise Unauthorized("the user name or password is wrong")
    raise Forbidden("this profile does not accept HTTP Basic authentication over EST")


async def identify_renewal(request: web.Request, now: datetime) -> ClientCertificate:
    """RFC 7030 §4.2.2: simplereenroll needs the certificate being renewed, as the TLS client
    certificate; certforge renews only certificates it issued (unexpired and unrevoked)."""
    cert = await client_certificate(request, now)
    if cert is None:
        raise Unauthorized(
            "simplereenroll needs the certificate being renewed as the TLS client certificate"
        )
    if cert.record is None:
        raise Forbidden("simplereenroll renews only certificates this CA issued")
    return cert
