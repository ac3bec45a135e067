"""Certificates from every default profile pass pkilint and ``openssl verify``.

Each case runs the real pipeline (verify_csr -> draft_for -> ProfilePolicy.decide ->
build_certificate) with a CA created in a temporary data directory. tls-server certificates
are linted as CA/Browser Forum DV subscriber certificates, the others against RFC 5280.
ERROR and FATAL findings fail the test; the rest are printed (``pytest -rP`` shows them).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pkilint import loader
from pkilint.cabf import serverauth
from pkilint.cabf.serverauth import serverauth_constants
from pkilint.finding_filter import filter_results
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity

from policies.profiles import ProfilePolicy
from server.ca.build import build_certificate
from server.ca.csr import verify_csr
from server.ca.issuers import CAHierarchy, load_or_create
from server.ca.serials import new_serial
from server.config import Config
from server.model import AuthMethod, EnrollmentRequest, Issue, Requester, Role
from server.profiles import draft_for
from tests.unit.ca.helpers import make_config, make_csr, subject_key

REQUESTER = Requester(AuthMethod.TOKEN, "lint", frozenset({Role.REQUESTER}))
DV = serverauth_constants.CertificateType.DV_FINAL_CERTIFICATE
OPENSSL_PURPOSE = {"tls-server": "sslserver", "tls-client": "sslclient", "device": "sslclient"}


def request_for(profile: str) -> dict[str, Any]:
    """A CSR's subject and SANs typical of the profile."""
    match profile:
        case "tls-server":
            sans: list[x509.GeneralName] = [
                x509.DNSName("www.example.com"),
                x509.DNSName("example.com"),
            ]
            return {"cn": "www.example.com", "sans": sans}
        case "tls-client":
            return {"cn": "alice", "sans": [x509.RFC822Name("alice@example.com")]}
        case _:
            return {
                "cn": "device-0001",
                "sans": [
                    x509.DNSName("device-0001.example.com"),
                    # pkilint checks URIs with validators.url, which refuses URNs and
                    # SPIFFE IDs (valid RFC 3986 URIs); an https URI avoids that false positive.
                    x509.UniformResourceIdentifier("https://devices.example.com/0001"),
                ],
            }


CASES = [
    pytest.param(profile, key_type, id=f"{profile}/{key_type}")
    for profile, key_types in [
        ("tls-server", ("ec-p256", "rsa-2048")),
        ("tls-client", ("ec-p256", "rsa-2048", "ed25519")),
        ("device", ("ec-p256", "rsa-2048", "ed25519")),
    ]
    for key_type in key_types
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, CAHierarchy]:
    # Real time: openssl verify checks the CA's validity against the clock.
    config = make_config(tmp_path_factory.mktemp("ca"))
    return config, load_or_create(config, passphrase=None, now=datetime.now(UTC))


async def issue(config: Config, cas: CAHierarchy, profile: str, key_type: str) -> x509.Certificate:
    kwargs = request_for(profile)
    csr = verify_csr(make_csr(subject_key(key_type), **kwargs))
    draft = draft_for(config.profiles[profile], csr)
    decision = await ProfilePolicy(config).decide(
        EnrollmentRequest(csr_der=b"", protocol="rest", requester=REQUESTER), draft
    )
    assert isinstance(decision, Issue), decision
    return build_certificate(
        decision.draft,
        public_key=csr.public_key,
        issuer=cas.issuer(decision.draft.issuer),
        serial=new_serial(),
        now=datetime.now(UTC),
    )


def lint(cert: x509.Certificate, profile: str) -> list[tuple[ValidationFindingSeverity, str]]:
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        cert.public_bytes(Encoding.DER), "leaf"
    )
    if profile == "tls-server":
        validator = certificate.create_pkix_certificate_validator_container(
            serverauth.create_decoding_validators(), serverauth.create_validators(DV)
        )
        results, _ = filter_results(
            serverauth.create_serverauth_finding_filters(DV), validator.validate(doc.root)
        )
    else:
        validator = certificate.create_pkix_certificate_validator_container(
            certificate.create_decoding_validators(
                name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
            ),
            [
                certificate.create_issuer_validator_container([]),
                certificate.create_validity_validator_container(),
                certificate.create_subject_validator_container([]),
                certificate.create_extensions_validator_container([]),
                certificate.create_spki_validator_container([]),
            ],
        )
        results = validator.validate(doc.root)
    return [
        (d.finding.severity, f"{d} @ {r.node.path}")
        for r in results
        for d in r.finding_descriptions
    ]


def openssl_verify(
    tmp_path: Path, cas: CAHierarchy, cert: x509.Certificate, purpose: str
) -> subprocess.CompletedProcess[str]:
    issuing, leaf = tmp_path / "issuing.pem", tmp_path / "leaf.pem"
    issuing.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in cas.issuer("default").chain))
    leaf.write_bytes(cert.public_bytes(Encoding.PEM))
    root = tmp_path / "root.pem"
    root.write_bytes(cas.root.public_bytes(Encoding.PEM))
    args: Sequence[str] = (
        "openssl",
        "verify",
        "-purpose",
        purpose,
        "-CAfile",
        str(root),
        "-untrusted",
        str(issuing),
        str(leaf),
    )
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=30)


@pytest.mark.parametrize(("profile", "key_type"), CASES)
async def test_profile_certificates_lint_clean(
    setup: tuple[Config, CAHierarchy], profile: str, key_type: str, tmp_path: Path
) -> None:
    config, cas = setup
    cert = await issue(config, cas, profile, key_type)
    findings = lint(cert, profile)
    for severity, text in findings:
        print(f"{profile}/{key_type}: {severity.name}: {text}")
    assert [t for s, t in findings if s <= ValidationFindingSeverity.ERROR] == []
    verified = openssl_verify(tmp_path, cas, cert, OPENSSL_PURPOSE[profile])
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_tls_server_refuses_ed25519(setup: tuple[Config, CAHierarchy]) -> None:
    """CA/Browser Forum BR §6.1.5 allows only RSA and ECDSA keys in TLS server certificates."""
    config, cas = setup
    with pytest.raises(AssertionError):
        await issue(config, cas, "tls-server", "ed25519")


def test_root_pem_is_the_trust_anchor(setup: tuple[Config, CAHierarchy]) -> None:
    config, cas = setup
    on_disk = x509.load_pem_x509_certificate((config.server.data_dir / "root.pem").read_bytes())
    assert on_disk == cas.root
    assert on_disk.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "certforge Root CA"
    )
