"""The CRL builder: the hand-encoded entries are byte for byte what cryptography encodes, the
spliced CRL verifies, and the publisher numbers, filters and announces CRLs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from server.ca.keystore import CAKey, signing_hash
from server.config import Config, CRLConfig
from server.model import (
    AuthMethod,
    EnrollmentRequest,
    EventKind,
    Issued,
    Requester,
    RevocationReason,
    RevokedEntry,
    Role,
)
from server.revocation import der
from server.revocation.crl import (
    REASON_FLAGS,
    CRLHeader,
    build_crl,
    encode_entries,
    encode_entry,
)
from server.revocation.crlfiles import CRLFiles
from server.revocation.publisher import CRLPublisher
from tests.unit.factories import FakeClock, make_csr, make_engine

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
ADMIN = Requester(AuthMethod.TOKEN, "admin", frozenset({Role.REQUESTER}))


def header(**overrides: object) -> CRLHeader:
    values: dict[str, object] = {
        "issuer": x509.Name.from_rfc4514_string("CN=Test Issuing CA,O=certforge"),
        "authority_key_id": bytes(range(20)),
        "number": 7,
        "this_update": NOW,
        "next_update": NOW + timedelta(days=1),
        "distribution_point": "http://ca.example.test/crl/default.crl",
    }
    values.update(overrides)
    return CRLHeader(**values)  # type: ignore[arg-type]  # overrides are loosely typed


SAMPLES = [
    (RevokedEntry(1, NOW, RevocationReason.UNSPECIFIED), "small_serial/no_reason"),
    (RevokedEntry(0x80, NOW, RevocationReason.KEY_COMPROMISE), "top_bit_serial"),
    (RevokedEntry((1 << 159) - 1, NOW, RevocationReason.CERTIFICATE_HOLD), "159_bit_serial"),
    (
        RevokedEntry(
            0x1234, NOW, RevocationReason.SUPERSEDED, invalidity_date=NOW - timedelta(days=2)
        ),
        "invalidity_date",
    ),
    (
        RevokedEntry(0x42, datetime(2051, 1, 1, tzinfo=UTC), RevocationReason.AA_COMPROMISE),
        "generalized_time_after_2049",
    ),
]


def cryptography_entry(entry: RevokedEntry) -> bytes:
    """The same entry as cryptography's builder encodes it, cut out of a CRL it signs."""
    builder = x509.RevokedCertificateBuilder().serial_number(entry.serial)
    builder = builder.revocation_date(entry.revoked_at)
    if entry.reason is not RevocationReason.UNSPECIFIED:
        builder = builder.add_extension(x509.CRLReason(REASON_FLAGS[entry.reason]), False)
    if entry.invalidity_date is not None:
        builder = builder.add_extension(x509.InvalidityDate(entry.invalidity_date), False)
    key = ec.generate_private_key(ec.SECP256R1())
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name.from_rfc4514_string("CN=x"))
        .last_update(NOW)
        .next_update(NOW + timedelta(days=1))
        .add_revoked_certificate(builder.build())
        .sign(key, signing_hash(key))
    )
    tbs = next(der.elements(der.content(crl.public_bytes(Encoding.DER))))
    revoked = list(der.elements(der.content(tbs)))[5]
    return der.content(revoked)


@pytest.mark.parametrize("entry", [pytest.param(e, id=i) for e, i in SAMPLES])
def test_entry_encoding_matches_cryptography(entry: RevokedEntry) -> None:
    assert encode_entry(entry) == cryptography_entry(entry)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(ec.generate_private_key(ec.SECP256R1()), id="ec-p256"),
        pytest.param(ec.generate_private_key(ec.SECP384R1()), id="ec-p384"),
        pytest.param(rsa.generate_private_key(65537, 2048), id="rsa-2048"),
        pytest.param(ed25519.Ed25519PrivateKey.generate(), id="ed25519"),
    ],
)
def test_spliced_crl_verifies_and_lists_every_entry(key: CAKey) -> None:
    entries = [entry for entry, _ in SAMPLES]
    crl = x509.load_der_x509_crl(build_crl(header(), encode_entries(entries), key))

    assert crl.is_signature_valid(key.public_key())
    assert sorted(r.serial_number for r in crl) == sorted(e.serial for e in entries)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7


def test_empty_crl_has_no_revoked_certificates_field() -> None:
    """RFC 5280 §5.1.2.6: with no entries the list MUST be absent."""
    key = ec.generate_private_key(ec.SECP256R1())
    data = build_crl(header(), b"", key)
    tbs = next(der.elements(der.content(data)))
    assert len(list(der.elements(der.content(tbs)))) == 6
    assert len(x509.load_der_x509_crl(data)) == 0


async def test_publisher_numbers_grow_and_expired_certificates_drop_off(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    engine, store = await make_engine(tmp_path, clock=clock)
    try:
        serials = []
        for name in ("a.example.test", "b.example.test"):
            outcome = await engine.submit(EnrollmentRequest(make_csr(name), "rest", ADMIN))
            assert isinstance(outcome, Issued)
            serials.append(outcome.certificate.serial)
        for serial in serials:
            await engine.revoke(serial, reason=RevocationReason.KEY_COMPROMISE, by=ADMIN)
        publisher = CRLPublisher(store=store, cas=engine.cas, config=CRLConfig(), clock=clock)

        first = await publisher.publish("default")
        clock.advance(timedelta(days=120))  # past the 90-day certificates' notAfter
        second = await publisher.publish("default")

        assert first.entries == 2 and second.entries == 0
        assert second.number == first.number + 1
        assert publisher.latest("default") == second
        assert {"default", "root"} == set(publisher.names)
        events = [e for e in await store.list_events() if e.kind is EventKind.CRL_PUBLISHED]
        assert [e.data["number"] for e in events] == [first.number, second.number]
        assert "BEGIN X509 CRL" in events[0].data["crl_pem"]
    finally:
        await store.close()


async def test_partitions_hold_their_own_certificates(tmp_path: Path) -> None:
    """Each certificate names partition serial mod shards; that partition's CRL lists it,
    with an issuing distribution point naming the same URL, and no other partition does."""
    clock = FakeClock(NOW)
    config = Config(crl=CRLConfig(shards=3))
    engine, store = await make_engine(tmp_path, clock=clock, config=config)
    try:
        certs = []
        for i in range(6):
            outcome = await engine.submit(
                EnrollmentRequest(make_csr(f"h{i}.example.test"), "rest", ADMIN)
            )
            assert isinstance(outcome, Issued)
            certs.append(x509.load_der_x509_certificate(outcome.certificate.der))
            await engine.revoke(
                outcome.certificate.serial, reason=RevocationReason.SUPERSEDED, by=ADMIN
            )
        publisher = CRLPublisher(store=store, cas=engine.cas, config=config.crl, clock=clock)

        published = await publisher.publish_ca("default")

        assert [c.shard for c in published] == [None, 0, 1, 2]
        assert published[0].entries == 6 == sum(c.entries for c in published[1:])
        ca = engine.cas.issuer("default")
        for cert in certs:
            cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            url = cdp[0].full_name[0].value
            shard = cert.serial_number % 3
            assert url == ca.crl_shard_url(shard)
            crl_of = publisher.latest(f"default/{shard}")
            assert crl_of is not None
            crl = x509.load_der_x509_crl(crl_of.der)
            idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
            assert idp.full_name == [x509.UniformResourceIdentifier(url)]
            assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
            other = publisher.latest(f"default/{(shard + 1) % 3}")
            assert other is not None
            assert (
                x509.load_der_x509_crl(other.der).get_revoked_certificate_by_serial_number(
                    cert.serial_number
                )
                is None
            )
    finally:
        await store.close()


async def test_delta_lists_changes_since_its_base(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    config = Config(crl=CRLConfig(delta_interval_minutes=15))
    engine, store = await make_engine(tmp_path, clock=clock, config=config)
    try:
        serials, ders = {}, []
        for name in ("before", "after", "held"):
            outcome = await engine.submit(
                EnrollmentRequest(make_csr(f"{name}.example.test"), "rest", ADMIN)
            )
            assert isinstance(outcome, Issued)
            serials[name] = outcome.certificate.serial
            ders.append(outcome.certificate.der)
        leaf = x509.load_der_x509_certificate(ders[0])
        await engine.revoke(serials["before"], reason=RevocationReason.SUPERSEDED, by=ADMIN)
        await engine.revoke(serials["held"], reason=RevocationReason.CERTIFICATE_HOLD, by=ADMIN)
        publisher = CRLPublisher(store=store, cas=engine.cas, config=config.crl, clock=clock)
        # A revocation in the base's own second may be repeated in the delta (harmless), so
        # the base is taken a minute later.
        clock.advance(timedelta(minutes=1))
        base = await publisher.publish("default")
        clock.advance(timedelta(minutes=5))
        await engine.revoke(serials["after"], reason=RevocationReason.KEY_COMPROMISE, by=ADMIN)
        await engine.unrevoke(serials["held"], by=ADMIN)
        clock.advance(timedelta(minutes=5))

        delta_info = await publisher.publish_delta("default")

        delta = x509.load_der_x509_crl(delta_info.der)
        indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
        assert indicator.critical and indicator.value.crl_number == base.number
        assert delta_info.number == base.number + 1
        reasons = {
            r.serial_number: r.extensions.get_extension_for_class(x509.CRLReason).value.reason
            for r in delta
        }
        assert reasons == {
            serials["after"]: x509.ReasonFlags.key_compromise,
            serials["held"]: x509.ReasonFlags.remove_from_crl,
        }
        assert publisher.latest("default/delta") == delta_info
        full = x509.load_der_x509_crl(base.der)
        freshest = full.extensions.get_extension_for_class(x509.FreshestCRL).value
        url = engine.cas.issuer("default").delta_crl_url
        assert freshest[0].full_name == [x509.UniformResourceIdentifier(url)]
        in_cert = leaf.extensions.get_extension_for_class(x509.FreshestCRL).value
        assert in_cert[0].full_name == [x509.UniformResourceIdentifier(url)]
    finally:
        await store.close()


async def test_workers_serve_the_newest_crl_any_of_them_published(tmp_path: Path) -> None:
    """Two publishers on one store and one CRL directory, as two workers of one server:
    whichever published last, both serve that CRL; an older one never replaces it."""
    clock = FakeClock(NOW)
    engine, store = await make_engine(tmp_path, clock=clock)
    try:
        shared = tmp_path / "crl"
        a, b, idle = (
            CRLPublisher(
                store=store, cas=engine.cas, config=CRLConfig(), clock=clock, directory=shared
            )
            for _ in range(3)
        )
        first = await a.publish("default")
        second = await b.publish("default")

        assert second.number > first.number
        assert await a.current("default") == second
        assert await b.current("default") == second
        assert await idle.current("default") == second  # a worker that never published
        assert await a.current("nope") is None
        assert await a.current("../default") is None

        files = CRLFiles(shared)
        files.save(first)  # a slow worker finishing late
        assert (shared / "default.crl").read_bytes() == second.der
    finally:
        await store.close()
