"""The HTTPS listener's own certificate, issued by certforge's CA and renewed before expiry.

It is recorded in the store like every certificate the CA signs (protocol ``internal``). The
file holds the leaf and the issuing CA, so a client that trusts only ``root.pem`` connects.
Renewal swaps the chain inside the live ``SSLContext``: new handshakes get the new one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Sequence
from datetime import timedelta
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.clientauth import request_client_certificates
from server.config import EKU_NAMES, Config
from server.durable import write_atomic
from server.engine import Engine
from server.model import (
    AuthMethod,
    CertificateDraft,
    EnrollmentRequest,
    Identifier,
    IdentifierType,
    Requester,
    Role,
)
from server.monitor.watched import WatchSource, leaf_of

log = logging.getLogger("certforge.tls")

TLS_PROFILE = "internal-tls"  # what the store records the server's TLS certificates under
SERVER = Requester(AuthMethod.TOKEN, "certforge-server", frozenset({Role.ADMINISTRATOR}))


def server_names(config: Config) -> tuple[Identifier, ...]:
    hosts = [config.server.https_listen.host, urlsplit(config.server.public_https_url).hostname]
    names: list[Identifier] = []
    for host in hosts:
        if not host:
            continue
        if host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard listener, not a bind here
            names += [
                Identifier(IdentifierType.DNS, "localhost"),
                Identifier(IdentifierType.IP, "127.0.0.1"),
            ]
            continue
        try:
            names.append(Identifier(IdentifierType.IP, str(ipaddress.ip_address(host))))
        except ValueError:
            names.append(Identifier(IdentifierType.DNS, host.lower()))
    return tuple(dict.fromkeys(names))


class ServerTLS:
    def __init__(
        self,
        config: Config,
        engine: Engine,
        *,
        client_anchors: Sequence[x509.Certificate] = (),
    ) -> None:
        self._config = config
        self._engine = engine
        self._dir = config.server.data_dir / "tls"
        self.cert_path = self._dir / "server.pem"
        self.key_path = self._dir / "server.key"
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        # Clients may authenticate with a certificate (EST); the front end judges it. Other
        # issuers' certificates are asked for when a front end accepts them
        # (``server.frontend.Mounted.client_anchors``).
        cas = [engine.cas.root, *(ca.certificate for ca in engine.cas.issuers.values())]
        request_client_certificates(
            self.context,
            [c.public_bytes(serialization.Encoding.PEM).decode() for c in [*cas, *client_anchors]],
        )

    def _needs_renewal(self) -> bool:
        if not (self.cert_path.exists() and self.key_path.exists()):
            return True
        chain = x509.load_pem_x509_certificates(self.cert_path.read_bytes())
        leaf = chain[0]
        if chain[-1].issuer != self._engine.cas.root.subject:  # the CA changed: re-issue
            return True
        renew_at = leaf.not_valid_after_utc - timedelta(
            days=self._config.server.tls_renew_before_days
        )
        return self._engine.clock.now() >= renew_at

    async def ensure(self) -> None:
        """Issue (or renew) the certificate when needed, then load it into the context."""
        if self._needs_renewal():
            await self._issue()
        self.context.load_cert_chain(self.cert_path, self.key_path)
        self._reserve_key()

    def _reserve_key(self) -> None:
        """No request may carry the listener's key: reserved once loaded (after its own
        issuance, which a reserved key would fail), and kept so after a renewal."""
        leaf = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        self._engine.reserved_keys.add("the HTTPS listener's TLS certificate", leaf.public_key())

    async def _issue(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        names = server_names(self._config)
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0].value)]))
            .add_extension(
                x509.SubjectAlternativeName([n.to_general_name() for n in names]), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        draft = CertificateDraft(
            profile=TLS_PROFILE,
            issuer=self._config.ca.issuers[0].name,
            subject=(("2.5.4.3", names[0].value),),
            sans=names,
            validity=timedelta(days=self._config.server.tls_cert_days),
            key_type="ec-p256",
            key_usage=frozenset({"digitalSignature"}),
            extended_key_usage=(EKU_NAMES["serverAuth"],),
        )
        req = EnrollmentRequest(csr.public_bytes(serialization.Encoding.DER), "internal", SERVER)
        issued = await self._engine.issue_internal(req, draft)
        chain = [issued.certificate.der, *issued.chain]
        pem = "".join(ssl.DER_cert_to_PEM_cert(der) for der in chain)
        write_atomic(
            self.key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            mode=0o600,
        )
        write_atomic(self.cert_path, pem.encode(), mode=0o600)
        log.info(
            "issued the server's TLS certificate",
            extra={"serial": format(issued.certificate.serial, "x")},
        )

    def watch_source(self) -> WatchSource:
        """For the monitor: the certificate the listener serves now (the file's leaf)."""
        return WatchSource(
            "tls", TLS_PROFILE, lambda: [("https", c) for c in leaf_of(self.cert_path)]
        )

    async def reload_forever(self, interval: float = 60.0) -> None:
        """In workers other than worker 0: load the certificate again when worker 0 has
        renewed it (new connections get the new one)."""
        loaded = self._mtime()
        while True:
            await asyncio.sleep(interval)
            if (mtime := self._mtime()) == loaded:
                continue
            try:
                self.context.load_cert_chain(self.cert_path, self.key_path)
                self._reserve_key()
            except (OSError, ssl.SSLError, ValueError):
                # Caught between the key's and the chain's write: the next round loads both.
                log.warning("reloading the server's TLS certificate failed; will retry")
                continue
            loaded = mtime

    def _mtime(self) -> float:
        try:
            return self.cert_path.stat().st_mtime
        except OSError:
            return 0.0

    async def renew_forever(self, interval: float = 3600.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.ensure()
            except Exception:
                log.exception("renewing the server's TLS certificate failed; will retry")
