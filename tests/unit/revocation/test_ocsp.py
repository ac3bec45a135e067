"""The OCSP responder's core and request parser: statuses, the cache and when it is dropped,
nonces, and every bad-input case with the OCSP status it must get."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from asn1crypto import algos
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from protocols.ocsp import frontend as ocsp_frontend
from protocols.ocsp import handlers as ocsp_handlers
from protocols.ocsp.errors import STATUSES, ocsp_error_middleware
from protocols.ocsp.messages import parse_ocsp_request
from server.config import Config, OCSPConfig
from server.engine import Engine
from server.errors import CertforgeError, ErrorKind, Malformed, TooLarge, Unauthorized
from server.keys import OCSP
from server.model import (
    AuthMethod,
    EnrollmentRequest,
    Event,
    EventKind,
    Issued,
    Requester,
    RevocationReason,
    Role,
)
from server.revocation import ocsp as ocsp_core
from server.revocation.ocsp import CertID, OCSPResponder
from server.revocation.signers import OCSPSigners
from server.store.sqlite import SQLiteStore
from tests.unit.factories import FakeClock, make_csr, make_engine

Setup = tuple[Engine, SQLiteStore, OCSPResponder, FakeClock]
ADMIN = Requester(AuthMethod.TOKEN, "admin", frozenset({Role.REQUESTER}))


async def issue(engine: Engine, name: str = "www.example.test") -> x509.Certificate:
    outcome = await engine.submit(EnrollmentRequest(make_csr(name), "rest", ADMIN))
    assert isinstance(outcome, Issued)
    return x509.load_der_x509_certificate(outcome.certificate.der)


def request_for(engine: Engine, cert: x509.Certificate, nonce: bytes | None = None) -> bytes:
    issuer = engine.cas.issuer("default").certificate
    sha1 = hashes.SHA1()  # noqa: S303 - the CertID hash clients send (RFC 5019)
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, sha1)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


async def make_responder(engine: Engine, tmp_path: Path, **config: object) -> OCSPResponder:
    cfg = Config(ocsp=OCSPConfig(**config)).with_data_dir(tmp_path / "data")  # type: ignore[arg-type]  # overrides by keyword
    signers = OCSPSigners(config=cfg, engine=engine, passphrase=None)
    await signers.ensure()
    responder = OCSPResponder(
        store=engine.store,
        issuers=engine.cas.issuers,
        signers=signers,
        config=cfg.ocsp,
        clock=engine.clock,
    )
    engine.on_status_change(responder.invalidate)
    return responder


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    clock = FakeClock()
    engine, store = await make_engine(tmp_path, clock=clock)
    responder = await make_responder(engine, tmp_path, recheck_seconds=3600.0)
    yield engine, store, responder, clock
    await store.close()


async def ask(responder: OCSPResponder, der: bytes) -> ocsp.OCSPResponse:
    parsed = parse_ocsp_request(der)
    answer = await responder.respond(parsed.cert_id, nonce=parsed.nonce)
    return ocsp.load_der_ocsp_response(answer.der)


async def test_good_revoked_and_released(setup: Setup) -> None:
    engine, _, responder, _ = setup
    cert = await issue(engine)
    der = request_for(engine, cert)
    assert (await ask(responder, der)).certificate_status is ocsp.OCSPCertStatus.GOOD

    await engine.revoke(cert.serial_number, reason=RevocationReason.CERTIFICATE_HOLD, by=ADMIN)
    held = await ask(responder, der)
    assert held.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert held.revocation_reason is x509.ReasonFlags.certificate_hold

    await engine.unrevoke(cert.serial_number, by=ADMIN)
    assert (await ask(responder, der)).certificate_status is ocsp.OCSPCertStatus.GOOD


async def test_unchanged_status_is_served_from_the_cache(setup: Setup) -> None:
    engine, _, responder, _ = setup
    der = request_for(engine, await issue(engine))
    first = parse_ocsp_request(der)
    a = await responder.respond(first.cert_id)
    assert responder.cached(first.cert_id) is a
    assert await responder.respond(first.cert_id) is a


async def test_answers_are_re_signed_after_half_their_validity(setup: Setup) -> None:
    engine, _, responder, clock = setup
    cert_id = parse_ocsp_request(request_for(engine, await issue(engine))).cert_id
    a = await responder.respond(cert_id)
    clock.advance(timedelta(hours=13))  # validity_hours 24
    b = await responder.respond(cert_id)
    assert b is not a and b.this_update > a.this_update


async def test_another_servers_revocation_shows_after_recheck(setup: Setup, tmp_path: Path) -> None:
    """Two responders on one store: a revocation through the other engine is invisible to
    the cache until the status is re-read (recheck_seconds 0 here: at once)."""
    engine, store, _, _ = setup
    other = await make_responder(engine, tmp_path / "b", recheck_seconds=0.0)
    stale = await make_responder(engine, tmp_path / "c", recheck_seconds=3600.0)
    cert = await issue(engine)
    cert_id = parse_ocsp_request(request_for(engine, cert)).cert_id
    await other.respond(cert_id)
    await stale.respond(cert_id)
    # Revoke in the store directly, as another server would: no invalidate() here.
    await store.revoke(
        cert.serial_number,
        reason=RevocationReason.KEY_COMPROMISE,
        at=engine.clock.now(),
        event=Event(EventKind.REVOKED, engine.clock.now(), serial=cert.serial_number),
    )

    fresh = ocsp.load_der_ocsp_response((await other.respond(cert_id)).der)
    cached = ocsp.load_der_ocsp_response((await stale.respond(cert_id)).der)

    assert fresh.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert cached.certificate_status is ocsp.OCSPCertStatus.GOOD


async def test_nonce_is_echoed_and_never_cached(setup: Setup) -> None:
    engine, _, responder, _ = setup
    cert = await issue(engine)
    response = await ask(responder, request_for(engine, cert, nonce=b"\x01" * 16))
    nonce = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert nonce == b"\x01" * 16
    cert_id = parse_ocsp_request(request_for(engine, cert)).cert_id
    assert responder.cached(cert_id) is None


async def test_unknown_serial_and_other_issuer(setup: Setup) -> None:
    engine, _, responder, _ = setup
    cert_id = parse_ocsp_request(request_for(engine, await issue(engine))).cert_id
    unknown = CertID(cert_id.hash_algorithm, cert_id.issuer_name_hash, cert_id.issuer_key_hash, 7)
    answer = ocsp.load_der_ocsp_response((await responder.respond(unknown)).der)
    assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    foreign = CertID("sha1", b"\0" * 20, cert_id.issuer_key_hash, cert_id.serial)
    with pytest.raises(Unauthorized):
        await responder.respond(foreign)


async def test_disabled_issuer_is_unauthorized(tmp_path: Path) -> None:
    engine, store = await make_engine(tmp_path)
    try:
        responder = await make_responder(engine, tmp_path, disabled_issuers=("default",))
        cert_id = parse_ocsp_request(request_for(engine, await issue(engine))).cert_id
        with pytest.raises(Unauthorized):
            await responder.respond(cert_id)
    finally:
        await store.close()


def _asn1_request(*, algorithm: str = "sha1", count: int = 1, serial: int = 5) -> bytes:
    cert_id = asn1_ocsp.CertId(
        {
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": algorithm}),
            "issuer_name_hash": b"\1" * 20,
            "issuer_key_hash": b"\2" * 20,
            "serial_number": serial,
        }
    )
    requests = [{"req_cert": cert_id}] * count
    return bytes(asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": requests}}).dump())


def _with_nonce(nonce: bytes) -> bytes:
    request = asn1_ocsp.OCSPRequest.load(_asn1_request())
    request["tbs_request"]["request_extensions"] = [
        {"extn_id": "nonce", "critical": False, "extn_value": nonce}
    ]
    return bytes(request.dump(force=True))


@pytest.mark.parametrize(
    ("der", "kind"),
    [
        pytest.param(b"", Malformed, id="malformed/empty"),
        pytest.param(b"\x04\x02ab", Malformed, id="malformed/not_a_sequence"),
        pytest.param(_asn1_request()[:-3], Malformed, id="malformed/truncated"),
        pytest.param(_asn1_request() + b"\0", Malformed, id="malformed/trailing_bytes"),
        pytest.param(b"\x30" * 9000, TooLarge, id="too_large/oversized"),
        pytest.param(_asn1_request(count=2), Malformed, id="malformed/two_requests"),
        pytest.param(_asn1_request(count=0), Malformed, id="malformed/no_request"),
        pytest.param(_asn1_request(serial=-5), Malformed, id="malformed/negative_serial"),
        pytest.param(_asn1_request(serial=1 << 160), Malformed, id="malformed/21_octet_serial"),
        pytest.param(_asn1_request(serial=1 << 63_000), Malformed, id="malformed/huge_serial"),
        pytest.param(_asn1_request(algorithm="md5"), Unauthorized, id="unauthorized/md5"),
        pytest.param(_with_nonce(b""), Malformed, id="malformed/empty_nonce"),
        pytest.param(_with_nonce(b"n" * 33), Malformed, id="malformed/long_nonce"),
    ],
)
def test_bad_requests_raise_the_right_kind(der: bytes, kind: type[CertforgeError]) -> None:
    with pytest.raises(kind):
        parse_ocsp_request(der)


def test_nonce_of_32_octets_is_accepted() -> None:
    assert parse_ocsp_request(_with_nonce(b"n" * 32)).nonce == b"n" * 32


def test_ocsp_status_table_covers_every_kind() -> None:
    assert set(STATUSES) == set(ErrorKind)


async def test_switched_off_responder_is_not_mounted_nor_named(tmp_path: Path) -> None:
    config = Config(ocsp=OCSPConfig(enabled=False))
    assert ocsp_frontend.mount(config).mounts == ()
    engine, store = await make_engine(tmp_path, config=config)
    try:
        cert = await issue(engine)
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        assert AuthorityInformationAccessOID.OCSP not in {d.access_method for d in aia}
    finally:
        await store.close()


def test_a_20_octet_serial_is_accepted() -> None:
    assert parse_ocsp_request(_asn1_request(serial=(1 << 159) + 1)).cert_id.serial == (1 << 159) + 1


async def test_the_answer_cache_is_bounded_in_bytes(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown serials (anyone may ask about any) fill the cache only up to its byte bound."""
    _, _, responder, _ = setup
    monkeypatch.setattr(ocsp_core, "MAX_CACHED_BYTES", 20_000)
    issuer = next(iter(responder._issuers))  # (algorithm, name hash, key hash)
    for serial in range(1, 400):
        await responder.respond(CertID(*issuer, serial=serial))
        assert responder._cached_bytes <= 20_000
        assert responder._cached_bytes == sum(len(c.answer.der) for c in responder._cache.values())
    assert 0 < len(responder._cache) < 399


async def test_only_plain_answered_requests_are_remembered(tmp_path: Path) -> None:
    """The map from request bytes to CertID keeps neither a padded request (its key is the
    whole request) nor one that was refused (another issuer's)."""
    engine, store = await make_engine(tmp_path)
    try:
        responder = await make_responder(engine, tmp_path)
        app = web.Application(middlewares=[ocsp_error_middleware])
        app[OCSP] = responder
        ocsp_handlers.add_routes(app)
        async with TestClient(TestServer(app)) as client:
            cert = await issue(engine)
            plain = request_for(engine, cert)
            padded = _padded(plain, 4000)
            foreign = _asn1_request()
            for body in (plain, padded, foreign):
                resp = await client.post("/", data=body)
                assert resp.status == 200
            assert list(app[ocsp_handlers.PARSED].keys()) == [plain]
    finally:
        await store.close()


def _padded(der: bytes, size: int) -> bytes:
    """``der`` with an unknown, non-critical request extension of ``size`` octets."""
    request = asn1_ocsp.OCSPRequest.load(der)
    request["tbs_request"]["request_extensions"] = [
        {"extn_id": "1.3.6.1.4.1.55555.1", "critical": False, "extn_value": b"p" * size}
    ]
    return bytes(request.dump(force=True))
