"""Fixture factories with defaults plus overrides (Boulder's newCAArgs style)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from policies.profiles import ProfilePolicy
from server.ca.issuers import load_or_create
from server.config import Config
from server.engine import Engine, EngineDeps
from server.model import CertificateDraft, Decision, EnrollmentRequest, Issue, PolicyModule
from server.store.sqlite import SQLiteStore


@dataclass
class FakeClock:
    current: datetime = field(default_factory=lambda: datetime(2026, 11, 25, 12, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@dataclass
class RecordingPolicy:
    """A policy module that records what it saw and answers a fixed decision."""

    name: str = "recording"
    answer: Decision | None = None  # None: Issue(the draft it received)
    seen: list[tuple[EnrollmentRequest, CertificateDraft]] = field(default_factory=list)

    async def decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Decision:
        self.seen.append((req, draft))
        return self.answer if self.answer is not None else Issue(draft)


def make_csr(
    name: str = "www.example.test",
    *,
    sans: Sequence[str] | None = None,
    key: object | None = None,
    padding: int = 0,
) -> bytes:
    """A signed CSR; ``padding`` octets of an unknown, non-critical extension make it larger."""
    private = key or ec.generate_private_key(ec.SECP256R1())
    assert isinstance(private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    )
    names = [name] if sans is None else list(sans)
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
    if padding:
        pad = x509.UnrecognizedExtension(
            x509.ObjectIdentifier("1.3.6.1.4.1.55555.2"), b"p" * padding
        )
        builder = builder.add_extension(pad, critical=False)
    return builder.sign(private, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


async def make_engine(
    tmp_path: Path,
    *,
    config: Config | None = None,
    policies: Sequence[PolicyModule] | None = None,
    clock: FakeClock | None = None,
) -> tuple[Engine, SQLiteStore]:
    config = (config or Config()).with_data_dir(tmp_path / "data")
    config.server.data_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or FakeClock()
    cas = load_or_create(config, passphrase=None, now=clock.now())
    store = SQLiteStore(f"sqlite:///{tmp_path / 'data' / 'certforge.db'}", consumers=["test"])
    await store.open()
    engine = Engine(
        EngineDeps(
            store=store,
            cas=cas,
            profiles=config.profiles,
            default_profile=config.policy.default_profile,
            policies=list(policies) if policies is not None else [ProfilePolicy(config)],
            clock=clock,
        )
    )
    return engine, store
