"""The CA hierarchy on disk: creation, loading, keys at rest, imports and their refusals."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from server.ca.issuers import (
    CAHierarchy,
    generate_key,
    load_or_create,
    load_passphrase,
    signing_hash,
)
from server.config import CAConfig, IssuerConfig
from server.errors import ConfigError, Internal
from tests.unit.ca.helpers import (
    NOW,
    ForeignCA,
    ec_key,
    key_pem,
    make_config,
    make_foreign_ca,
    pem,
    sign_test_cert,
)

PASSPHRASE = b"correct horse battery staple"


def create(
    data_dir: Path,
    *,
    passphrase: bytes | None = None,
    issuers: Sequence[IssuerConfig] = (IssuerConfig(),),
    **ca: Any,
) -> CAHierarchy:
    config = make_config(data_dir, issuers=issuers, **ca)
    return load_or_create(config, passphrase=passphrase, now=NOW)


def extension(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


# ------------------------------------------------------------------------------ creation
def test_first_start_creates_root_and_issuer_files(tmp_path: Path) -> None:
    cas = create(tmp_path)
    assert (tmp_path / "root.pem").read_bytes() == pem(cas.root)
    assert (tmp_path / "ca" / "default.pem").read_bytes() == pem(cas.issuer("default").certificate)
    for key_file in ("root.key.pem", "default.key.pem"):
        mode = stat.S_IMODE(os.stat(tmp_path / "ca" / key_file).st_mode)
        assert mode == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "ca").st_mode) == 0o700
    assert not list(tmp_path.rglob("*.tmp"))


def test_root_certificate_profile(tmp_path: Path) -> None:
    root = create(tmp_path).root
    assert root.subject.rfc4514_string() == "CN=certforge Root CA,O=certforge"
    assert root.issuer == root.subject
    constraints = extension(root, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=None)
    usage = extension(root, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert not usage.value.digital_signature
    root.verify_directly_issued_by(root)
    assert root.not_valid_before_utc == NOW


def test_issuing_ca_certificate_profile(tmp_path: Path) -> None:
    cas = create(tmp_path)
    ca = cas.issuer("default")
    cert = ca.certificate
    cert.verify_directly_issued_by(cas.root)
    assert cert.subject.rfc4514_string() == "CN=certforge default Issuing CA,O=certforge"
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = extension(cert, x509.KeyUsage).value
    assert isinstance(usage, x509.KeyUsage)
    assert (usage.digital_signature, usage.key_cert_sign, usage.crl_sign) == (True, True, True)
    root_ski = extension(cas.root, x509.SubjectKeyIdentifier).value
    aki = extension(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(root_ski, x509.SubjectKeyIdentifier)
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == root_ski.digest
    assert "http://pki.example.com/crl/root.crl" in str(extension(cert, x509.CRLDistributionPoints))
    assert "http://pki.example.com/ca/root.cer" in str(
        extension(cert, x509.AuthorityInformationAccess)
    )


def test_issuing_ca_urls_and_chain(tmp_path: Path) -> None:
    cas = create(tmp_path)
    ca = cas.issuer("default")
    assert ca.crl_url == "http://pki.example.com/crl/default.crl"
    assert ca.ocsp_url == "http://pki.example.com/ocsp"
    assert ca.ca_issuers_url == "http://pki.example.com/ca/default.cer"
    assert cas.root_crl_url == "http://pki.example.com/crl/root.crl"
    assert cas.root_ca_issuers_url == "http://pki.example.com/ca/root.cer"
    assert ca.chain == (ca.certificate,)
    assert ca.chain_der == (ca.certificate.public_bytes(serialization.Encoding.DER),)
    assert ca.root == cas.root
    ski = extension(ca.certificate, x509.SubjectKeyIdentifier).value
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert ca.ski == ski.digest


def test_second_start_loads_what_exists(tmp_path: Path) -> None:
    first = create(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    second = create(tmp_path)
    assert second.root == first.root
    assert second.issuer("default").certificate == first.issuer("default").certificate
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_issuer_added_later_is_signed_by_the_existing_root(tmp_path: Path) -> None:
    first = create(tmp_path)
    second = create(tmp_path, issuers=(IssuerConfig(), IssuerConfig(name="devices")))
    assert second.root == first.root
    second.issuer("devices").certificate.verify_directly_issued_by(first.root)


@pytest.mark.parametrize(
    ("key_type", "key_class", "hash_name"),
    [
        pytest.param("ec-p256", ec.EllipticCurvePrivateKey, "sha256", id="ok/ec_p256"),
        pytest.param("ec-p384", ec.EllipticCurvePrivateKey, "sha384", id="ok/ec_p384"),
        pytest.param("rsa-2048", rsa.RSAPrivateKey, "sha256", id="ok/rsa_2048"),
    ],
)
def test_issuer_key_types(tmp_path: Path, key_type: str, key_class: type, hash_name: str) -> None:
    cas = create(tmp_path, issuers=(IssuerConfig(key_type=key_type),))
    ca = cas.issuer("default")
    assert isinstance(ca.key, key_class)
    assert ca.hash_algorithm is not None
    assert ca.hash_algorithm.name == hash_name
    assert isinstance(cas.root_key, ec.EllipticCurvePrivateKey)  # [ca] key_type stays P-256


def test_the_root_takes_the_ca_key_type(tmp_path: Path) -> None:
    cas = create(tmp_path, key_type="ec-p384")
    assert isinstance(cas.root_key, ec.EllipticCurvePrivateKey)
    assert cas.root_key.curve.name == "secp384r1"
    assert cas.root.signature_hash_algorithm is not None
    assert cas.root.signature_hash_algorithm.name == "sha384"


def test_unknown_issuer_is_an_internal_error(tmp_path: Path) -> None:
    with pytest.raises(Internal):
        create(tmp_path).issuer("nope")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("root", id="bad_name/root"),
        pytest.param("../escape", id="bad_name/path"),
        pytest.param("", id="bad_name/empty"),
    ],
)
def test_issuer_names_must_be_safe_file_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError):
        create(tmp_path, issuers=(IssuerConfig(name=name),))


def test_missing_root_pem_with_existing_issuers_is_refused(tmp_path: Path) -> None:
    create(tmp_path)
    (tmp_path / "root.pem").unlink()
    with pytest.raises(ConfigError):
        create(tmp_path)


def test_missing_issuer_key_is_refused(tmp_path: Path) -> None:
    create(tmp_path)
    (tmp_path / "ca" / "default.key.pem").unlink()
    with pytest.raises(ConfigError):
        create(tmp_path)


# ------------------------------------------------------------------------ keys at rest
def test_keys_are_encrypted_with_the_passphrase(tmp_path: Path) -> None:
    create(tmp_path, passphrase=PASSPHRASE)
    for key_file in ("root.key.pem", "default.key.pem"):
        assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "ca" / key_file).read_bytes()
    assert create(tmp_path, passphrase=PASSPHRASE).root_key is not None


@pytest.mark.parametrize(
    "passphrase",
    [
        pytest.param(None, id="bad_passphrase/missing"),
        pytest.param(b"wrong", id="bad_passphrase/wrong"),
    ],
)
def test_encrypted_keys_need_the_right_passphrase(tmp_path: Path, passphrase: bytes | None) -> None:
    create(tmp_path, passphrase=PASSPHRASE)
    with pytest.raises(ConfigError):
        create(tmp_path, passphrase=passphrase)


def test_unencrypted_keys_are_encrypted_once_a_passphrase_is_set(tmp_path: Path) -> None:
    create(tmp_path)
    create(tmp_path, passphrase=PASSPHRASE)
    assert b"ENCRYPTED" in (tmp_path / "ca" / "default.key.pem").read_bytes()
    with pytest.raises(ConfigError):
        create(tmp_path)


def test_load_passphrase_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_TEST_PASSPHRASE", "from-env")
    assert load_passphrase(CAConfig(passphrase_env="CF_TEST_PASSPHRASE")) == b"from-env"
    assert load_passphrase(CAConfig()) is None


def test_load_passphrase_from_file(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_text("from-file\nsecond line\n")
    assert load_passphrase(CAConfig(passphrase_file=str(path))) == b"from-file"


@pytest.mark.parametrize(
    "ca",
    [
        pytest.param(CAConfig(passphrase_env="CF_TEST_UNSET"), id="bad_passphrase/env_unset"),
        pytest.param(CAConfig(passphrase_env="CF_TEST_EMPTY"), id="bad_passphrase/env_empty"),
        pytest.param(CAConfig(passphrase_file="/nonexistent/pw"), id="bad_passphrase/no_file"),
        pytest.param(
            CAConfig(passphrase_env="CF_TEST_EMPTY", passphrase_file="/x"),
            id="bad_passphrase/both_sources",
        ),
    ],
)
def test_load_passphrase_refuses(monkeypatch: pytest.MonkeyPatch, ca: CAConfig) -> None:
    monkeypatch.delenv("CF_TEST_UNSET", raising=False)
    monkeypatch.setenv("CF_TEST_EMPTY", "")
    with pytest.raises(ConfigError):
        load_passphrase(ca)


def test_empty_passphrase_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "passphrase"
    path.write_text("\n")
    with pytest.raises(ConfigError):
        load_passphrase(CAConfig(passphrase_file=str(path)))


# ------------------------------------------------------------------------------ imports
def write_import(
    tmp_path: Path, foreign: ForeignCA, *, password: bytes | None = None, with_chain: bool = True
) -> IssuerConfig:
    chain = (
        (foreign.issuing, foreign.intermediate, foreign.root) if with_chain else (foreign.issuing,)
    )
    (tmp_path / "import.pem").write_bytes(pem(*chain))
    (tmp_path / "import.key").write_bytes(key_pem(foreign.issuing_key, password))
    return IssuerConfig(
        name="imported",
        import_cert=str(tmp_path / "import.pem"),
        import_key=str(tmp_path / "import.key"),
        import_password_env="CF_TEST_IMPORT" if password else "",
    )


def test_import_pem_with_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = make_foreign_ca()
    monkeypatch.setenv("CF_TEST_IMPORT", "import-pw")
    issuer = write_import(tmp_path, foreign, password=b"import-pw")
    data = tmp_path / "data"
    cas = create(data, issuers=(issuer,), passphrase=PASSPHRASE)
    ca = cas.issuer("imported")
    assert cas.root == foreign.root
    assert cas.root_key is None
    assert ca.chain == (foreign.issuing, foreign.intermediate)
    assert (data / "root.pem").read_bytes() == pem(foreign.root)
    assert (data / "ca" / "imported.pem").read_bytes() == pem(foreign.issuing, foreign.intermediate)
    assert b"ENCRYPTED" in (data / "ca" / "imported.key.pem").read_bytes()
    # The second start needs neither the import files nor their password.
    monkeypatch.delenv("CF_TEST_IMPORT")
    (tmp_path / "import.key").unlink()
    again = create(data, issuers=(issuer,), passphrase=PASSPHRASE)
    assert again.issuer("imported").chain == ca.chain


def test_import_self_signed_ca(tmp_path: Path) -> None:
    key = ec_key()
    cert = sign_test_cert("Standalone CA", key, issuer=None)
    (tmp_path / "ca.pem").write_bytes(pem(cert))
    (tmp_path / "ca.key").write_bytes(key_pem(key))
    issuer = IssuerConfig(
        name="solo", import_cert=str(tmp_path / "ca.pem"), import_key=str(tmp_path / "ca.key")
    )
    cas = create(tmp_path / "data", issuers=(issuer,))
    assert cas.root == cert
    assert cas.issuer("solo").chain == (cert,)


def test_import_pkcs12(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = make_foreign_ca()
    p12 = pkcs12.serialize_key_and_certificates(
        b"imported",
        foreign.issuing_key,
        foreign.issuing,
        [foreign.root, foreign.intermediate],
        serialization.BestAvailableEncryption(b"p12-pw"),
    )
    (tmp_path / "ca.p12").write_bytes(p12)
    monkeypatch.setenv("CF_TEST_IMPORT", "p12-pw")
    issuer = IssuerConfig(
        name="imported",
        import_pkcs12=str(tmp_path / "ca.p12"),
        import_password_env="CF_TEST_IMPORT",
    )
    cas = create(tmp_path / "data", issuers=(issuer,))
    assert cas.root == foreign.root
    assert cas.issuer("imported").chain == (foreign.issuing, foreign.intermediate)


def bad_import_non_ca(tmp_path: Path) -> IssuerConfig:
    foreign = make_foreign_ca()
    leaf_key = ec_key()
    leaf = sign_test_cert("leaf", leaf_key, issuer=(foreign.root.subject, ec_key()), ca=False)
    return replace(
        write_import(tmp_path, foreign),
        import_cert=_write(tmp_path, "leaf.pem", pem(leaf, foreign.root)),
        import_key=_write(tmp_path, "leaf.key", key_pem(leaf_key)),
    )


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    (tmp_path / name).write_bytes(data)
    return str(tmp_path / name)


def bad_import_wrong_key(tmp_path: Path) -> IssuerConfig:
    issuer = write_import(tmp_path, make_foreign_ca())
    return replace(issuer, import_key=_write(tmp_path, "other.key", key_pem(ec_key())))


def bad_import_no_chain(tmp_path: Path) -> IssuerConfig:
    return write_import(tmp_path, make_foreign_ca(), with_chain=False)


def bad_import_password_unset(tmp_path: Path) -> IssuerConfig:
    return write_import(tmp_path, make_foreign_ca(), password=b"pw")


def bad_import_wrong_pkcs12_password(tmp_path: Path) -> IssuerConfig:
    foreign = make_foreign_ca()
    p12 = pkcs12.serialize_key_and_certificates(
        b"x",
        foreign.issuing_key,
        foreign.issuing,
        [foreign.root],
        serialization.BestAvailableEncryption(b"right"),
    )
    return IssuerConfig(name="imported", import_pkcs12=_write(tmp_path, "ca.p12", p12))


def bad_import_missing_file(tmp_path: Path) -> IssuerConfig:
    return IssuerConfig(
        name="imported",
        import_cert=str(tmp_path / "nope.pem"),
        import_key=str(tmp_path / "nope.key"),
    )


def bad_import_ed448_key(tmp_path: Path) -> IssuerConfig:
    key = ed448.Ed448PrivateKey.generate()
    cert = sign_test_cert("Ed448 CA", ec_key(), issuer=None)
    return IssuerConfig(
        name="imported",
        import_cert=_write(tmp_path, "c.pem", pem(cert)),
        import_key=_write(
            tmp_path,
            "c.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        ),
    )


@pytest.mark.parametrize(
    "make_issuer",
    [
        pytest.param(bad_import_non_ca, id="bad_import/not_a_ca"),
        pytest.param(bad_import_wrong_key, id="bad_import/key_does_not_match"),
        pytest.param(bad_import_no_chain, id="bad_import/no_root_in_chain"),
        pytest.param(bad_import_password_unset, id="bad_import/password_env_unset"),
        pytest.param(bad_import_wrong_pkcs12_password, id="bad_import/pkcs12_wrong_password"),
        pytest.param(bad_import_missing_file, id="bad_import/missing_file"),
        pytest.param(bad_import_ed448_key, id="bad_import/ed448_key"),
    ],
)
def test_bad_imports_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_issuer: Callable[[Path], IssuerConfig]
) -> None:
    monkeypatch.delenv("CF_TEST_IMPORT", raising=False)
    issuer = make_issuer(tmp_path)
    with pytest.raises(ConfigError):
        create(tmp_path / "data", issuers=(issuer,))
    assert not (tmp_path / "data" / "ca" / "imported.pem").exists()


def test_import_from_another_root_than_root_pem_is_refused(tmp_path: Path) -> None:
    create(tmp_path / "data")
    issuer = write_import(tmp_path, make_foreign_ca())
    with pytest.raises(ConfigError):
        create(tmp_path / "data", issuers=(IssuerConfig(), issuer))


def test_creating_an_issuer_needs_the_root_key(tmp_path: Path) -> None:
    issuer = write_import(tmp_path, make_foreign_ca())
    create(tmp_path / "data", issuers=(issuer,))
    with pytest.raises(ConfigError):
        create(tmp_path / "data", issuers=(issuer, IssuerConfig(name="new")))


def test_changed_import_cert_is_not_silently_ignored(tmp_path: Path) -> None:
    issuer = write_import(tmp_path, make_foreign_ca())
    create(tmp_path / "data", issuers=(issuer,))
    write_import(tmp_path, make_foreign_ca())
    with pytest.raises(ConfigError):
        create(tmp_path / "data", issuers=(issuer,))


# -------------------------------------------------------------------- key generation
@pytest.mark.parametrize(
    ("key_type", "hash_name"),
    [
        pytest.param("ec-p256", "sha256", id="ok/ec_p256"),
        pytest.param("ec-p384", "sha384", id="ok/ec_p384"),
        pytest.param("rsa-2048", "sha256", id="ok/rsa_2048"),
    ],
)
def test_generate_key_and_signing_hash(key_type: str, hash_name: str) -> None:
    key = generate_key(key_type)
    digest = signing_hash(key)
    assert digest is not None
    assert digest.name == hash_name
    assert type(signing_hash(key.public_key())) is type(digest)


def test_signing_hash_of_p521_and_ed25519() -> None:
    assert isinstance(signing_hash(ec.generate_private_key(ec.SECP521R1())), hashes.SHA512)
    assert signing_hash(ed25519.Ed25519PrivateKey.generate()) is None


def test_generate_key_refuses_unknown_types() -> None:
    with pytest.raises(ConfigError):
        generate_key("dsa-2048")
