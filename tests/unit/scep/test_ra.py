"""The SCEP identity: an RSA RA certificate for a non-RSA CA, persisted and renewed in time."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from protocols.scep import ra
from protocols.scep.config import SECTION as SCEP_SECTION
from protocols.scep.ra import Identities
from server.config import CAConfig, Config, IssuerConfig
from tests.unit.factories import FakeClock, make_engine


async def test_ra_for_an_ec_ca_is_issued_persisted_and_renewed(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = await make_engine(tmp_path, clock=clock)
    try:
        config = Config().with_data_dir(tmp_path / "data")
        identity = await Identities(config, engine).of("default")
        assert identity.ra is not None
        assert isinstance(identity.ra.public_key(), rsa.RSAPublicKey)
        identity.ra.verify_directly_issued_by(identity.ca)
        ku = identity.ra.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_encipherment and ku.digital_signature
        await store.get_certificate(identity.ra.serial_number)  # recorded like any other

        # A restart loads the same RA from the data directory.
        again = await Identities(config, engine).of("default")
        assert again.ra == identity.ra

        identities = Identities(config, engine)
        first = await identities.of("default")
        clock.advance(timedelta(days=SCEP_SECTION.of(config).ra_validity_days - 10))
        renewed = await identities.of("default")
        assert renewed.ra is not None and renewed.ra != first.ra
        # Envelopes sealed to the previous RA still open until it expires.
        assert len(renewed.recipients) == 2
    finally:
        await store.close()


async def test_rsa_ca_is_its_own_identity(tmp_path: Path) -> None:
    config = Config(ca=CAConfig(key_type="rsa-2048", issuers=(IssuerConfig(key_type="rsa-2048"),)))
    engine, store = await make_engine(tmp_path, config=config)
    try:
        identity = await Identities(config.with_data_dir(tmp_path / "data"), engine).of("default")
        assert identity.ra is None
        body, content_type = identity.ca_certs()
        assert content_type == "application/x-x509-ca-cert"
        assert x509.load_der_x509_certificate(body) == identity.ca
    finally:
        await store.close()


async def test_processes_sharing_a_data_dir_agree_on_one_ra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ra, "RELOAD_SECONDS", 0.0)  # rereading is rate-limited in real time
    clock = FakeClock()
    engine, store = await make_engine(tmp_path, clock=clock)
    try:
        config = Config().with_data_dir(tmp_path / "data")
        worker_a, worker_b = Identities(config, engine), Identities(config, engine)
        a, b = await asyncio.gather(worker_a.of("default"), worker_b.of("default"))
        assert a.ra == b.ra  # the file lock let one issue it and the other load it

        # Worker A renews; worker B, handed a message sealed to the new RA, rereads the disk.
        clock.advance(timedelta(days=SCEP_SECTION.of(config).ra_validity_days - 10))
        renewed = await worker_a.of("default")
        assert renewed.ra != a.ra
        clock.current -= timedelta(days=SCEP_SECTION.of(config).ra_validity_days - 10)
        fresh = await worker_b.reload("default", stale=b)
        assert fresh.ra == renewed.ra
        # ... and still opens envelopes sealed to the RA it knew.
        assert a.signer.certificate.dump() in [r.certificate.dump() for r in fresh.recipients]
    finally:
        await store.close()
