"""What the CMP front end needs from the rest of certforge (``CMPDeps``), and the small types
its modules hand each other (how a request was authenticated, what to answer).

``CMPDeps`` is built once, when the server starts, by whoever wires the front end in; the
front end reads no configuration itself. Where each field comes from is in its comment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509

from protocols.cmp.protection import MACScheme, SigningKey
from protocols.cmp.secrets import SharedSecret
from server.ca.issuers import CAHierarchy
from server.engine import Engine
from server.model import CertificateRecord, Clock
from server.store.base import Store


@dataclass(frozen=True, slots=True)
class CMPDeps:
    engine: Engine  # the process's engine
    store: Store  # the process's store (transactions are documents in it)
    cas: CAHierarchy  # the CA hierarchy: chains for extraCerts, trust for signers, caCerts
    clock: Clock  # messageTime checks and answers
    # The key that signs answers to signature-protected requests and errors that cannot be
    # MAC-protected, and its certificate first, then the issuers up to (not including) the
    # root: a certificate of this CA with digitalSignature (``openssl cmp`` requires it on a
    # CMP signer unless -ignore_keyusage), kept and renewed like SCEP's RA certificate.
    signer_key: SigningKey
    signer_chain: tuple[x509.Certificate, ...]
    # One-time (or configured long-lived) shared secrets by reference (the senderKID):
    # ``protocols.cmp.secrets.OneTimeSecrets.secret_for`` and ``use_secret``.
    secret_for: Callable[[bytes], Awaitable[SharedSecret | None]]
    use_secret: Callable[[bytes], Awaitable[bool]]
    # 32 random octets kept in the data directory and shared by the servers sharing the
    # store: seals the MAC secret a transaction keeps for its certConf and pollReq.
    master_key: bytes
    default_profile: str  # the profile of /.well-known/cmp
    # Issuers of certificates that may sign ir and cr besides this CA's (a manufacturer's
    # CA, as EST's [est] trust_anchors).
    trust_anchors: tuple[x509.Certificate, ...] = ()
    max_clock_skew: timedelta = timedelta(minutes=5)  # messageTime, either way
    check_after_seconds: int = 5  # pollRep's checkAfter, and Retry hint of a waiting status
    grant_implicit_confirm: bool = True  # grant implicitConfirm when a client asks
    # Current CRLs (DER) for genm crlStatusList; None: answered with no CRLs.
    crls: Callable[[], Awaitable[Sequence[bytes]]] | None = None


@dataclass(frozen=True, slots=True)
class MACAuth:
    reference: bytes  # the senderKID
    secret: SharedSecret
    scheme: MACScheme
    from_transaction: bool  # the transaction's copy: the one-time secret was used already


@dataclass(frozen=True, slots=True)
class SignerAuth:
    certificate: x509.Certificate
    key_sha256: str  # hex SHA-256 of its SubjectPublicKeyInfo
    record: CertificateRecord | None  # when this CA issued it; None: a trust anchor did


Auth = MACAuth | SignerAuth


@dataclass(frozen=True, slots=True)
class Answer:
    body: object  # a PKIBody (pyasn1)
    extra_certs: tuple[bytes, ...] = ()  # DER, after the protection certificate's chain
    implicit_confirm: bool = False
    sender_nonce: bytes | None = None  # None: a fresh one nobody needs to remember
