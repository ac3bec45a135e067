"""The HTTPS listener's certificate: issued by certforge's CA, recorded, renewed in time."""

from __future__ import annotations

import ssl
from datetime import timedelta
from pathlib import Path

from cryptography import x509

from server.config import Config
from server.model import CertificateQuery
from server.tls import ServerTLS, server_names
from tests.unit.factories import FakeClock, make_engine


async def test_issued_recorded_and_renewed_before_expiry(tmp_path: Path) -> None:
    clock = FakeClock()
    engine, store = await make_engine(tmp_path, clock=clock)
    config = Config().with_data_dir(tmp_path / "data")
    try:
        tls = ServerTLS(config, engine)
        await tls.ensure()
        chain = x509.load_pem_x509_certificates(tls.cert_path.read_bytes())
        assert len(chain) == 2  # leaf and issuing CA: clients trusting root.pem can connect
        first = chain[0].serial_number
        assert (
            chain[0]
            .extensions.get_extension_for_class(x509.SubjectAlternativeName)
            .value.get_values_for_type(x509.IPAddress)
        )
        await tls.ensure()  # still fresh: kept
        assert x509.load_pem_x509_certificates(tls.cert_path.read_bytes())[0].serial_number == first
        clock.advance(
            timedelta(days=config.server.tls_cert_days - config.server.tls_renew_before_days + 1)
        )
        await tls.ensure()
        renewed = x509.load_pem_x509_certificates(tls.cert_path.read_bytes())[0]
        assert renewed.serial_number != first
        recorded = {c.serial for c in await store.find_certificates(CertificateQuery())}
        assert {first, renewed.serial_number} <= recorded
        assert isinstance(tls.context, ssl.SSLContext)
    finally:
        await store.close()


def test_server_names_cover_listener_and_public_url() -> None:
    names = {str(n) for n in server_names(Config())}
    assert names == {"ip:127.0.0.1"}
