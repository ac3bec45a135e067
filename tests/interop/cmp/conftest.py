"""The CMP sub-app served by a real aiohttp server in the test process, on a free port, with
a real engine and SQLite store (``tests.unit.factories.make_engine``), driven by the real
``openssl cmp``.

The front end is not wired into ``certforge serve`` yet (issue 14, part 1): this fixture
builds ``CMPDeps`` the way the wiring will, with a response-signing certificate of the
issuing CA (digitalSignature) and one-time secrets sealed under a random master key.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from protocols.cmp import cmp_app
from protocols.cmp.deps import CMPDeps
from protocols.cmp.secrets import OneTimeSecrets
from server.ca.issuers import CAHierarchy
from server.config import Config
from server.engine import Engine
from server.store.sqlite import SQLiteStore
from tests.unit.factories import FakeClock, make_engine

CMP_AUTH = ("challenge_password", "client_cert")


@dataclass
class OffsetClock:
    """The real time, moved by ``offset``: openssl stamps messageTime with the real time."""

    offset: timedelta = field(default_factory=timedelta)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class CMPServer:
    url: str  # host:port, for openssl's -server
    engine: Engine
    store: SQLiteStore
    secrets: OneTimeSecrets
    clock: OffsetClock
    root_pem: Path
    dir: Path

    async def openssl(self, *args: str) -> tuple[int, str]:
        """``openssl cmp`` with ``args``, run without blocking the loop that serves it."""
        proc = await asyncio.create_subprocess_exec(
            "openssl",
            "cmp",
            "-server",
            self.url,
            *args,
            cwd=self.dir,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(errors="replace")


def cmp_config() -> Config:
    """Every default profile accepts CMP; ``device`` (CN only, no SAN needed) is the
    default endpoint's, ``manual`` holds requests for an administrator."""
    config = Config()
    profiles = {
        name: replace(p, auth={**p.auth, "cmp": CMP_AUTH}) for name, p in config.profiles.items()
    }
    profiles["manual"] = replace(profiles["device"], name="manual", approval="manual")
    return replace(config, profiles=profiles)


def signer_certificate(
    cas: CAHierarchy, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A CMP signer certificate of the issuing CA, as the wiring will keep one."""
    ca = cas.issuer("default")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certforge CMP")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca.key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture
async def cmp_server(tmp_path: Path) -> AsyncIterator[CMPServer]:
    clock = OffsetClock()
    engine, store = await make_engine(
        tmp_path, config=cmp_config(), clock=FakeClock(datetime.now(UTC))
    )
    secrets = OneTimeSecrets(
        store, clock.now, master_key=os.urandom(32), default_lifetime=timedelta(hours=1)
    )
    key, cert = signer_certificate(engine.cas, datetime.now(UTC))
    deps = CMPDeps(
        engine=engine,
        store=store,
        cas=engine.cas,
        clock=clock,
        signer_key=key,
        signer_chain=(cert, *engine.cas.issuer("default").chain),
        secret_for=secrets.secret_for,
        use_secret=secrets.use_secret,
        master_key=os.urandom(32),
        default_profile="device",
        check_after_seconds=1,
    )
    app = web.Application()
    app.add_subapp("/.well-known/cmp", cmp_app(deps))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(engine.cas.root.public_bytes(Encoding.PEM))
    try:
        yield CMPServer(
            f"127.0.0.1:{server.port}", engine, store, secrets, clock, root_pem, tmp_path
        )
    finally:
        await server.close()
        await store.close()
