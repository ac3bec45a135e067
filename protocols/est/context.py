"""What the EST sub-application keeps between requests (looked up with the ``EST`` key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web
from cryptography import x509

from protocols.est.users import VerifiedPasswords


@dataclass
class ESTContext:
    anchors: list[x509.Certificate]  # [est] trust_anchors: external CAs for client certificates
    retry_after: int  # seconds, for 202 answers
    verified: VerifiedPasswords = field(default_factory=VerifiedPasswords)
    # SHA-256 of client certificates whose signature chained to a trusted CA already.
    chained: set[bytes] = field(default_factory=set)


EST = web.AppKey("est", ESTContext)
