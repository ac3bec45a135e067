"""The SCEP identity: an RSA RA certificate for a non-RSA CA, persisted and renewed in time."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

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
        clock.advance(timedelta(days=config.scep.ra_validity_days - 10))
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
