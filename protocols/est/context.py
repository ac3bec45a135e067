"""What the EST sub-application keeps between requests (looked up with the ``EST`` key)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from cryptography import x509

from protocols.est.keygen import CONCURRENT_GENERATIONS
from protocols.est.keyvault import KEY_FILE, KeySeal
from protocols.est.users import VerifiedPasswords

if TYPE_CHECKING:
    from protocols.est.auth import ClientCertificate

# A client certificate's verdict (signature, store record, revocation) is reused this long; a
# revocation on this server clears it at once (Engine.on_status_change), one on another server
# sharing the store shows within this time.
RECHECK_SECONDS = 1.0


@dataclass
class ESTContext:
    anchors: list[x509.Certificate]  # [est] trust_anchors: external CAs for client certificates
    retry_after: int  # seconds, for 202 answers
    data_dir: Path  # where the sealing key of waiting server-generated keys lives
    verified: VerifiedPasswords = field(default_factory=VerifiedPasswords)
    # SHA-256 of client certificates whose signature chained to a trusted CA already.
    chained: set[bytes] = field(default_factory=set)
    # SHA-256 of a client certificate -> (monotonic expiry, its verdict).
    client_certs: dict[bytes, tuple[float, ClientCertificate]] = field(default_factory=dict)
    # serverkeygen's key generations at once (protocols.est.keygen).
    generations: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CONCURRENT_GENERATIONS)
    )
    _seal: KeySeal | None = None

    async def seal(self) -> KeySeal:
        """The sealing key of waiting server-generated keys, made on first use."""
        if self._seal is None:
            self._seal = await asyncio.to_thread(KeySeal.load_or_create, self.data_dir / KEY_FILE)
        return self._seal

    def known_certificate(self, fingerprint: bytes) -> ClientCertificate | None:
        hit = self.client_certs.get(fingerprint)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def remember_certificate(self, fingerprint: bytes, cert: ClientCertificate) -> None:
        if len(self.client_certs) > 10_000:
            self.client_certs.clear()
        self.client_certs[fingerprint] = (time.monotonic() + RECHECK_SECONDS, cert)

    def forget_certificates(self, serial: int) -> None:
        self.client_certs.clear()  # revocations are rare; forget every verdict


EST = web.AppKey("est", ESTContext)
