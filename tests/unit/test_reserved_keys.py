"""No certificate request may carry one of certforge's own keys (``server/ca/reserved.py``):
the engine refuses it as a bad public key and records nothing, whichever part holds the key
(the CAs, known to the engine; the OCSP signers, the TLS listener and the SCEP RA, which
reserve theirs as they load or make them)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from protocols.scep.ra import Identities, stored_ra_keys
from server.ca.reserved import spki_sha256
from server.config import Config
from server.engine import Engine
from server.errors import BadPublicKey, ErrorKind, ReservedPublicKey
from server.model import (
    ANONYMOUS,
    AuthMethod,
    Denied,
    EnrollmentRequest,
    Issued,
    Pending,
    Requester,
    RequestQuery,
    Role,
    Status,
)
from server.revocation.signers import OCSPSigners
from server.store.sqlite import SQLiteStore
from server.tls import ServerTLS
from tests.unit.factories import FakeClock, make_csr, make_engine

ADMIN = Requester(AuthMethod.TOKEN, "admin", frozenset({Role.ADMINISTRATOR}))
ENROLLER = Requester(AuthMethod.TOKEN, "script", frozenset({Role.REQUESTER}))
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def rest(csr: bytes, requester: Requester = ENROLLER) -> EnrollmentRequest:
    return EnrollmentRequest(csr_der=csr, protocol="rest", requester=requester)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[Engine, SQLiteStore]]:
    pair = await make_engine(tmp_path)
    yield pair
    await pair[1].close()


def _root_key(eng: Engine) -> PrivateKey:
    key = eng.cas.root_key
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key


def _issuing_key(eng: Engine) -> PrivateKey:
    key = eng.cas.issuer("default").key
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key


@pytest.mark.parametrize(
    "ca_key",
    [
        pytest.param(_root_key, id="reserved/root_ca_key"),
        pytest.param(_issuing_key, id="reserved/issuing_ca_key"),
    ],
)
async def test_a_request_for_a_ca_key_is_a_bad_public_key_and_records_nothing(
    engine: tuple[Engine, SQLiteStore], ca_key: Callable[[Engine], PrivateKey]
) -> None:
    eng, store = engine
    csr = make_csr("ca-key.example.test", key=ca_key(eng))
    with pytest.raises(ReservedPublicKey) as refused:
        await eng.submit(rest(csr))
    assert refused.value.kind is ErrorKind.BAD_PUBLIC_KEY  # each protocol's bad-key answer
    with pytest.raises(ReservedPublicKey):
        eng.verify_csr(csr)  # what front ends call before spending a one-time secret
    assert await store.find_requests(RequestQuery()) == []


async def test_a_key_reserved_after_the_front_end_verified_it_is_still_refused(
    engine: tuple[Engine, SQLiteStore],
) -> None:
    eng, store = engine
    key = ec.generate_private_key(ec.SECP256R1())
    csr = make_csr("late.example.test", key=key)
    verified = eng.verify_csr(csr)
    eng.reserved_keys.add("a test holder", key.public_key())
    with pytest.raises(ReservedPublicKey):
        await eng.submit(rest(verified.der), verified=verified)
    assert await store.find_requests(RequestQuery()) == []
    # Any other key is not affected.
    assert isinstance(await eng.submit(rest(make_csr("other.example.test"))), Issued)


async def test_a_weak_key_is_still_a_plain_bad_public_key(
    engine: tuple[Engine, SQLiteStore],
) -> None:
    eng, _ = engine
    short = rsa.generate_private_key(65537, 1024)
    with pytest.raises(BadPublicKey) as refused:
        await eng.submit(rest(make_csr("weak.example.test", key=short)))
    assert not isinstance(refused.value, ReservedPublicKey)


async def test_a_held_request_whose_key_became_reserved_fails_on_approval(
    engine: tuple[Engine, SQLiteStore], caplog: pytest.LogCaptureFixture
) -> None:
    eng, store = engine
    key = ec.generate_private_key(ec.SECP256R1())
    held = await eng.submit(rest(make_csr("held.example.test", key=key), ANONYMOUS))
    assert isinstance(held, Pending)
    eng.reserved_keys.add("a test holder", key.public_key())
    with caplog.at_level(logging.WARNING):
        outcome = await eng.approve(held.request_id, by=ADMIN)
    assert isinstance(outcome, Denied)
    assert (await store.get_request(held.request_id)).status is Status.FAILED
    # A refusal, not a failure of certforge's: a warning, nothing at error level.
    assert [r.levelname for r in caplog.records if r.name == "certforge.engine"] == ["WARNING"]


async def test_the_tls_key_is_reserved_and_stays_so_after_renewal(tmp_path: Path) -> None:
    clock = FakeClock()
    eng, store = await make_engine(tmp_path, clock=clock)
    config = Config().with_data_dir(tmp_path / "data")
    try:
        tls = ServerTLS(config, eng)
        await tls.ensure()
        first = _leaf_key_sha256(tls.cert_path)
        assert first in eng.reserved_keys
        clock.advance(timedelta(days=config.server.tls_cert_days))
        await tls.ensure()
        renewed = _leaf_key_sha256(tls.cert_path)
        assert renewed != first
        assert first in eng.reserved_keys and renewed in eng.reserved_keys
    finally:
        await store.close()


async def test_the_ocsp_signer_key_is_reserved_and_stays_so_after_rotation(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    eng, store = await make_engine(tmp_path, clock=clock)
    config = Config().with_data_dir(tmp_path / "data")
    try:
        signers = OCSPSigners(config=config, engine=eng, passphrase=None)
        await signers.ensure()
        first = spki_sha256(signers.get("default").certificate.public_key())
        assert first in eng.reserved_keys
        clock.advance(timedelta(days=config.ocsp.signer_validity_days))
        await signers.ensure()
        rotated = spki_sha256(signers.get("default").certificate.public_key())
        assert rotated != first
        assert first in eng.reserved_keys and rotated in eng.reserved_keys
    finally:
        await store.close()


async def test_the_scep_ra_key_is_reserved_when_made_and_when_found_at_start(
    tmp_path: Path,
) -> None:
    eng, store = await make_engine(tmp_path)
    config = Config().with_data_dir(tmp_path / "data")
    try:
        assert stored_ra_keys(config) == []  # made on the first SCEP request only
        identity = await Identities(config, eng).of("default")
        assert identity.ra is not None
        ra_key = spki_sha256(identity.ra.public_key())
        assert ra_key in eng.reserved_keys
        # What the next start reserves before any SCEP request (server/app.py, core).
        assert [(h, spki_sha256(k)) for h, k in stored_ra_keys(config)] == [
            ("the SCEP RA of default", ra_key)
        ]
    finally:
        await store.close()


def _leaf_key_sha256(path: Path) -> str:
    return spki_sha256(x509.load_pem_x509_certificate(path.read_bytes()).public_key())
