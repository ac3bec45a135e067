"""EST's sans-I/O pieces: RFC 8951 body decoding, CsrAttrs, PoP linking, the error table,
server-generated keys and EST users."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID

from protocols.est import keygen, users
from protocols.est.errors import STATUS
from protocols.est.messages import (
    check_pop_linking,
    csr_attributes,
)
from protocols.est.users import VerifiedPasswords, add_user, delete_user, verify_password
from server.ca.csr import csr_der_from_bytes, verify_csr
from server.config import default_profiles
from server.errors import BadCSR, BadPublicKey, CertforgeError, ErrorKind, Forbidden, Malformed
from server.store.sqlite import SQLiteStore
from tests.unit.factories import FakeClock, make_csr

CSR = make_csr("dev.example.test")


def test_error_table_covers_every_kind() -> None:
    assert set(STATUS) == set(ErrorKind)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(base64.encodebytes(CSR), id="base64/lf_breaks"),
        pytest.param(base64.encodebytes(CSR).replace(b"\n", b"\r\n"), id="base64/crlf_breaks"),
        pytest.param(base64.b64encode(CSR), id="base64/one_line"),
        pytest.param(b"  " + base64.b64encode(CSR) + b"\n\n", id="base64/surrounding_space"),
        pytest.param(
            b"-----BEGIN CERTIFICATE REQUEST-----\n"
            + base64.encodebytes(CSR)
            + b"-----END CERTIFICATE REQUEST-----\n",
            id="pem",
        ),
        pytest.param(CSR, id="der"),
    ],
)
def test_pkcs10_bodies_rfc8951_tolerates(body: bytes) -> None:
    assert csr_der_from_bytes(body) == CSR


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="bad_body/empty"),
        pytest.param(b"%%%%", id="bad_body/not_base64"),
        pytest.param(base64.b64encode(b"hello"), id="bad_body/not_pkcs10"),
    ],
)
def test_unreadable_bodies_are_bad_csr(body: bytes) -> None:
    with pytest.raises(BadCSR):
        verify_csr(csr_der_from_bytes(body))


def test_unknown_key_algorithm_is_bad_public_key_not_a_crash() -> None:
    ec_public_key_oid = bytes.fromhex("06072a8648ce3d0201")
    assert ec_public_key_oid in CSR
    der = CSR.replace(ec_public_key_oid, bytes.fromhex("06072a8648ce3d0209"))
    with pytest.raises(CertforgeError) as raised:
        verify_csr(csr_der_from_bytes(der))
    assert raised.value.kind in (ErrorKind.BAD_CSR, ErrorKind.BAD_PUBLIC_KEY)


class _Values(core.SetOf):  # type: ignore[misc]
    _child_spec = core.ObjectIdentifier


class _Attribute(core.Sequence):  # type: ignore[misc]
    _fields = [("type", core.ObjectIdentifier), ("values", _Values)]  # noqa: RUF012


class _AttrOrOID(core.Choice):  # type: ignore[misc]
    _alternatives = [("oid", core.ObjectIdentifier), ("attribute", _Attribute)]  # noqa: RUF012


class _CsrAttrs(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _AttrOrOID


def _oids(der: bytes) -> list[str]:
    """Every OID in the CsrAttrs (RFC 7030 §4.5.2), in order, attributes flattened."""
    found: list[str] = []
    for item in _CsrAttrs.load(der):
        if item.name == "oid":
            found.append(item.chosen.dotted)
        else:
            found.append(item.chosen["type"].dotted)
            found += [value.dotted for value in item.chosen["values"]]
    return found


def test_csr_attributes_name_key_curve_signature_and_san() -> None:
    oids = _oids(csr_attributes(default_profiles()["tls-server"]))
    assert oids == [
        "1.2.840.10045.2.1",  # id-ecPublicKey
        "1.2.840.10045.3.1.7",  # secp256r1
        "1.2.840.10045.4.3.2",  # ecdsa-with-SHA256
        "1.2.840.113549.1.9.14",  # extensionRequest
        "2.5.29.17",  # subjectAltName
    ]


def test_csr_attributes_ask_for_challenge_password_when_linking() -> None:
    profile = replace(default_profiles()["device"], est_pop_linking=True)
    assert _oids(csr_attributes(profile))[0] == "1.2.840.113549.1.9.7"


def _csr_with_password(password: str | None) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")])
    )
    if password is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, password.encode())
    return builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())


def test_pop_linking_accepts_the_sessions_tls_unique() -> None:
    unique = bytes(range(12))
    check_pop_linking(_csr_with_password(base64.b64encode(unique).decode()), unique)


@pytest.mark.parametrize(
    ("password", "tls_unique"),
    [
        pytest.param("AAECAwQFBgcICQoL", None, id="pop/tls13_has_no_tls_unique"),
        pytest.param(None, bytes(12), id="pop/no_challenge_password"),
        pytest.param("AAECAwQFBgcICQoL", bytes(12), id="pop/another_session"),
    ],
)
def test_pop_linking_refusals(password: str | None, tls_unique: bytes | None) -> None:
    with pytest.raises(Forbidden):
        check_pop_linking(_csr_with_password(password), tls_unique)


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "ed25519", "rsa-2048"])
def test_serverkeygen_key_is_of_the_requested_kind(key_type: str) -> None:
    csr = x509.load_der_x509_csr(make_csr("gen.example.test"))
    csr_der, _ = keygen.request_for_new_key(csr, key_type)
    parsed = verify_csr(csr_der)
    assert parsed.key_type == key_type
    assert parsed.csr.subject == csr.subject
    assert parsed.sans == verify_csr(make_csr("gen.example.test")).sans


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(f"sqlite:///{tmp_path / 'est.db'}", consumers=[])
    await s.open()
    yield s
    await s.close()


async def test_users_verify_remember_and_forget(store: SQLiteStore) -> None:
    verified = VerifiedPasswords(recheck=0.0)  # no document cache: deletion shows at once
    password = await add_user(store, FakeClock(), "alice")
    assert await verify_password(store, verified, "alice", password)
    assert len(verified.seen) == 1  # the next check skips scrypt
    assert await verify_password(store, verified, "alice", password)
    assert not await verify_password(store, verified, "alice", password + "x")
    assert not await verify_password(store, verified, "bob", password)
    await delete_user(store, "alice")
    # Deletion shows even though the password was remembered.
    assert not await verify_password(store, verified, "alice", password)


async def test_an_unknown_user_costs_the_same_scrypt_as_a_wrong_password(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without it an unknown name was answered in 2 ms, a known one's wrong password in 68:
    the names could be listed by timing."""
    password = await add_user(store, FakeClock(), "alice")
    calls: list[dict[str, int]] = []
    real = users.scrypt

    def recording_scrypt(password: str, salt: bytes, *, n: int, r: int, p: int) -> bytes:
        calls.append({"n": n, "r": r, "p": p})
        return real(password, salt, n=n, r=r, p=p)

    monkeypatch.setattr(users, "scrypt", recording_scrypt)
    verified = VerifiedPasswords()
    assert not await verify_password(store, verified, "alice", password + "x")
    assert not await verify_password(store, verified, "mallory", password)
    assert len(calls) == 2
    assert calls[0] == calls[1]


@pytest.mark.parametrize("name", ["", "a:b", "x" * 65, "-lead"])
async def test_user_names_are_checked(store: SQLiteStore, name: str) -> None:
    with pytest.raises(Malformed):
        await add_user(store, FakeClock(), name)


@pytest.mark.parametrize(
    ("profile", "key_type", "error"),
    [
        pytest.param("tls-server", "ec-p256", None, id="ok/ec_p256"),
        pytest.param("tls-server", "rsa-4096", None, id="ok/rsa_4096"),
        pytest.param("tls-server", "rsa-8192", BadPublicKey, id="bad_public_key/rsa_over_4096"),
        pytest.param("tls-server", "ed25519", Forbidden, id="forbidden/not_in_profile"),
        pytest.param("device", "ed25519", None, id="ok/ed25519_in_device"),
        pytest.param("tls-server", "ec-p192", BadPublicKey, id="bad_public_key/unknown_kind"),
    ],
)
def test_serverkeygen_checks_the_key_kind_before_generating(
    profile: str, key_type: str, error: type[CertforgeError] | None
) -> None:
    """RSA-8192 took 9 to 16 s of CPU before the profile denied the request."""
    if error is None:
        keygen.check_generable(default_profiles()[profile], key_type)
        return
    with pytest.raises(error):
        keygen.check_generable(default_profiles()[profile], key_type)
    if key_type == "rsa-8192":
        with pytest.raises(BadPublicKey):
            keygen.generate_like(key_type)
