"""CA keys in a PKCS#11 token (SoftHSM2): certforge's own certificate, CRL and OCSP code
signs through them unchanged, openssl verifies the results, the keys cannot leave the
token, and a token that goes away is ``KeyUnavailable`` until it is back, without a new
pool."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509 import ocsp
from pkcs11 import Attribute, ObjectClass

from server.ca.build import build_certificate
from server.ca.cacerts import issuing_certificate, root_certificate
from server.ca.issuers import IssuingCA
from server.ca.pkcs11 import PKCS11PrivateKey, TokenPool, find_key, generate_key
from server.ca.pkcs11keys import PKCS11ECPrivateKey, PKCS11RSAPrivateKey
from server.ca.pkcs11uri import PKCS11URI
from server.errors import ConfigError, KeyUnavailable, Unavailable
from server.model import (
    CertificateDraft,
    Identifier,
    IdentifierType,
    RevocationReason,
    RevokedEntry,
)
from server.revocation.crl import CRLHeader, build_crl, encode_entries
from tests.softhsm import SoftHSM, softhsm_token

BASE_URL = "http://pki.example.com"
DRAFT = CertificateDraft(
    profile="tls-server",
    issuer="default",
    subject=(("2.5.4.3", "www.example.com"),),
    sans=(Identifier(IdentifierType.DNS, "www.example.com"),),
    validity=timedelta(days=1),
    key_type="ec-p256",
    key_usage=frozenset({"digitalSignature"}),
    extended_key_usage=("1.3.6.1.5.5.7.3.1",),
)


@pytest.fixture(scope="module")
def hsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHSM:
    token = softhsm_token(tmp_path_factory.mktemp("softhsm"))
    # Its own token for the wrong PIN: login state is per token and process, and the pool's
    # token is logged in. Made now: SoftHSM2 sees new tokens only when its module starts.
    token.init_token("wrong-pin", pin="1111")
    return token


class Ticks:
    """The pool's monotonic clock, moved by the test that needs time to pass."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


RETRY_SECONDS = 1.0


@pytest.fixture(scope="module")
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture(scope="module")
def pool(hsm: SoftHSM, ticks: Ticks) -> Iterator[TokenPool]:
    token_pool = TokenPool(
        module=hsm.module,
        token_label=hsm.label,
        pin=hsm.pin,
        retry_seconds=RETRY_SECONDS,
        clock=ticks,
    )
    yield token_pool
    token_pool.close()


_KEYS: dict[str, PKCS11PrivateKey] = {}


def token_key(pool: TokenPool, key_type: str, *, decrypt: bool = False) -> PKCS11PrivateKey:
    """One key of each type per run (RSA generation takes the token a while)."""
    label = f"{key_type}{'-decrypt' if decrypt else ''}"
    if label not in _KEYS:
        with pool.rw_session() as session:
            uri = generate_key(session, label=label, key_type=key_type, decrypt=decrypt)
        _KEYS[label] = find_key(pool, uri)
    return _KEYS[label]


def ec_token_key(pool: TokenPool) -> PKCS11ECPrivateKey:
    key = token_key(pool, "ec-p256")
    assert isinstance(key, PKCS11ECPrivateKey)
    return key


def pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    return path


def openssl(*args: str | Path) -> str:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "rsa-2048"])
def test_certificate_crl_and_ocsp_signed_in_the_token_verify(
    pool: TokenPool, key_type: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC) - timedelta(minutes=1)
    root_key, ca_key = token_key(pool, key_type), token_key(pool, "ec-p256")
    root = root_certificate(ca_name="HSM", key=root_key, now=now, validity_days=30)
    ca_cert = issuing_certificate(
        ca_name="HSM",
        issuer_name="default",
        key=ca_key,
        root=(root, root_key),
        base_url=BASE_URL,
        now=now,
        validity_days=30,
    )
    issuer = IssuingCA.from_chain(
        "default", chain=(ca_cert,), key=ca_key, root=root, base_url=BASE_URL
    )
    leaf = build_certificate(
        DRAFT,
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
        issuer=issuer,
        serial=0x1234,
        now=now,
    )
    openssl(
        "verify",
        "-CAfile",
        pem(tmp_path / "root.pem", root),
        "-untrusted",
        pem(tmp_path / "ca.pem", ca_cert),
        pem(tmp_path / "leaf.pem", leaf),
    )

    header = CRLHeader(
        issuer=root.subject,
        authority_key_id=x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()).digest,
        number=1,
        this_update=now,
        next_update=now + timedelta(days=1),
        distribution_point=f"{BASE_URL}/crl/root.crl",
        covers_ca_certificates=True,
    )
    entries = encode_entries([RevokedEntry(7, now, RevocationReason.KEY_COMPROMISE)])
    crl = tmp_path / "root.crl"
    crl.write_bytes(build_crl(header, entries, root_key))
    assert "verify OK" in openssl(
        "crl", "-in", crl, "-inform", "DER", "-CAfile", tmp_path / "root.pem", "-noout"
    )

    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=ca_cert,
            issuer=root,
            algorithm=hashes.SHA1(),  # noqa: S303 - the CertID hash clients send (RFC 5019)
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, root)
        .sign(root_key, hashes.SHA256())
    )
    assert response.signature_hash_algorithm is not None
    _verify(
        root_key, response.signature, response.tbs_response_bytes, response.signature_hash_algorithm
    )


def _verify(
    key: PKCS11PrivateKey, signature: bytes, data: bytes, algorithm: hashes.HashAlgorithm
) -> None:
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, data, ec.ECDSA(algorithm))
    else:
        public.verify(signature, data, padding.PKCS1v15(), algorithm)


@pytest.mark.parametrize(
    "salt",
    [
        pytest.param(padding.PSS.DIGEST_LENGTH, id="digest_length"),
        pytest.param(padding.PSS.MAX_LENGTH, id="max_length"),
        pytest.param(20, id="20_bytes"),
    ],
)
def test_rsa_pss_certificate_verifies(pool: TokenPool, salt: int, tmp_path: Path) -> None:
    key = token_key(pool, "rsa-2048")
    now = datetime.now(UTC) - timedelta(minutes=1)
    name = x509.Name.from_rfc4514_string("CN=PSS Root")
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), salt)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256(), rsa_padding=pss)
    )
    assert isinstance(key.public_key(), rsa.RSAPublicKey)
    openssl("verify", "-CAfile", pem(tmp_path / "pss.pem", cert), tmp_path / "pss.pem")


@pytest.mark.parametrize(
    "scheme",
    [
        pytest.param(padding.PKCS1v15(), id="pkcs1v15"),
        pytest.param(
            # The OAEP most tokens do (SoftHSM 2.6 does no other).
            padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),  # noqa: S303
            id="oaep_sha1",
        ),
    ],
)
def test_rsa_decrypts_in_the_token(pool: TokenPool, scheme: padding.AsymmetricPadding) -> None:
    key = token_key(pool, "rsa-2048", decrypt=True)
    assert isinstance(key, PKCS11RSAPrivateKey)
    content_key = bytes(range(32))
    assert key.decrypt(key.public_key().encrypt(content_key, scheme), scheme) == content_key


def test_a_padding_the_token_refuses_is_unsupported_and_the_pool_stays_usable(
    pool: TokenPool,
) -> None:
    key = token_key(pool, "rsa-2048", decrypt=True)
    assert isinstance(key, PKCS11RSAPrivateKey)
    # SoftHSM 2.6 does OAEP with SHA-1 only; a token that does SHA-256 too decrypts it.
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    ciphertext = key.public_key().encrypt(b"k", oaep)
    with contextlib.suppress(UnsupportedAlgorithm):
        assert key.decrypt(ciphertext, oaep) == b"k"
    assert (
        key.decrypt(key.public_key().encrypt(b"k", padding.PKCS1v15()), padding.PKCS1v15()) == b"k"
    )


def test_a_bad_ciphertext_is_a_value_error_and_the_pool_stays_usable(pool: TokenPool) -> None:
    key = token_key(pool, "rsa-2048", decrypt=True)
    assert isinstance(key, PKCS11RSAPrivateKey)
    with pytest.raises(ValueError, match="Decryption failed"):
        key.decrypt(b"\x01" * 256, padding.PKCS1v15())
    assert (
        key.decrypt(key.public_key().encrypt(b"k", padding.PKCS1v15()), padding.PKCS1v15()) == b"k"
    )


@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_keys_cannot_leave_the_token(pool: TokenPool, key_type: str) -> None:
    key = token_key(pool, key_type)
    secret = Attribute.VALUE if key_type.startswith("ec") else Attribute.PRIVATE_EXPONENT
    with pool.session() as pooled:
        obj = pooled.private_key(key.uri)
        assert obj[Attribute.SENSITIVE] is True
        assert obj[Attribute.EXTRACTABLE] is False
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            obj[secret]
    with pytest.raises(TypeError):
        key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    with pytest.raises(TypeError):
        key.private_numbers()


def test_token_removed_is_key_unavailable_then_signs_again(
    pool: TokenPool, hsm: SoftHSM, ticks: Ticks
) -> None:
    key = ec_token_key(pool)
    data = b"to be signed"
    with hsm.removed():
        for _ in range(3):  # every attempt answers at once, none crashes or hangs
            with pytest.raises(KeyUnavailable) as gone:
                key.sign(data, ec.ECDSA(hashes.SHA256()))
            assert isinstance(gone.value, Unavailable)  # each protocol's table maps it
    # Back, but the last reconnection failed less than retry_seconds ago: not yet.
    with pytest.raises(KeyUnavailable):
        key.sign(data, ec.ECDSA(hashes.SHA256()))
    ticks.advance(RETRY_SECONDS)
    signature = key.sign(data, ec.ECDSA(hashes.SHA256()))  # the same pool and key object
    key.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))


def test_threads_signing_at_once_take_turns(pool: TokenPool) -> None:
    key = ec_token_key(pool)
    failures: list[BaseException] = []

    def sign_some() -> None:
        try:
            for i in range(20):
                data = f"message {i}".encode()
                key.public_key().verify(
                    key.sign(data, ec.ECDSA(hashes.SHA256())), data, ec.ECDSA(hashes.SHA256())
                )
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=sign_some) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_wrong_pin_is_one_line(hsm: SoftHSM) -> None:
    with pytest.raises(ConfigError) as refused:
        TokenPool(module=hsm.module, token_label="wrong-pin", pin="9999")
    assert "PIN is refused" in one_line(refused)


def test_missing_module_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        TokenPool(module=str(tmp_path / "nothing.so"), token_label="test", pin="1234")
    assert "cannot load the PKCS#11 module" in one_line(refused)


def test_unknown_token_is_one_line(hsm: SoftHSM) -> None:
    with pytest.raises(ConfigError) as refused:
        TokenPool(module=hsm.module, token_label="no-such-token", pin="1234")
    assert "no token with that label" in one_line(refused)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("no-such-key", id="label"),
        pytest.param("pkcs11:object=no-such-key;type=private", id="uri"),
        pytest.param("pkcs11:id=%FF%FF", id="id"),
    ],
)
def test_key_not_found_is_one_line(pool: TokenPool, name: str) -> None:
    with pytest.raises(ConfigError) as refused:
        find_key(pool, name)
    assert "has no private key" in one_line(refused)


def test_a_key_found_by_uri_and_by_label_is_the_same(pool: TokenPool) -> None:
    key = token_key(pool, "ec-p384")
    by_label = find_key(pool, "ec-p384")
    assert key.uri.id is not None
    by_id = find_key(pool, PKCS11URI(id=key.uri.id, token="test"))
    by_text = find_key(pool, str(key.uri))
    assert by_label.public_key() == by_id.public_key() == by_text.public_key() == key.public_key()


def test_a_uri_for_another_token_is_refused(pool: TokenPool) -> None:
    with pytest.raises(ConfigError) as refused:
        find_key(pool, "pkcs11:token=other;object=ec-p256")
    assert "names token 'other'" in one_line(refused)


def test_generating_over_an_existing_label_is_refused(pool: TokenPool) -> None:
    token_key(pool, "ec-p256")
    with pool.rw_session() as session, pytest.raises(ConfigError) as refused:
        generate_key(session, label="ec-p256", key_type="ec-p256")
    assert "already holds" in one_line(refused)
    with pool.session() as pooled:
        found = list(
            pooled.session.get_objects(
                {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: "ec-p256"}
            )
        )
    assert len(found) == 1
