"""The default policy module, step by step; each case's id names what it exercises."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from policies.base import PolicyModule
from policies.profiles import ProfilePolicy, create, is_dns_name
from server.ca.csr import verify_csr
from server.config import Config, default_profiles
from server.errors import ConfigError
from server.model import (
    AuthMethod,
    CertificateDraft,
    Decision,
    Deny,
    EnrollmentRequest,
    Hold,
    Identifier,
    Issue,
    Requester,
    Role,
    Vouched,
)
from server.profiles import draft_for
from tests.unit.ca.helpers import make_csr, rsa_key

CN, ORG, SERIAL = "2.5.4.3", "2.5.4.10", "2.5.4.5"


def make_draft(
    profile: str = "tls-server",
    *,
    subject: tuple[tuple[str, str], ...] = ((CN, "www.example.com"),),
    sans: tuple[str, ...] = ("dns:www.example.com",),
    key_type: str = "ec-p256",
) -> CertificateDraft:
    return CertificateDraft(
        profile=profile,
        issuer="default",
        subject=subject,
        sans=tuple(Identifier.parse(s) for s in sans),
        validity=timedelta(days=90),
        key_type=key_type,
        key_usage=frozenset({"digitalSignature"}),
    )


def make_request(
    method: AuthMethod = AuthMethod.TOKEN,
    *,
    protocol: str = "rest",
    roles: frozenset[Role] = frozenset({Role.REQUESTER}),
    vouched: tuple[str, ...] = (),
) -> EnrollmentRequest:
    return EnrollmentRequest(
        csr_der=b"",
        protocol=protocol,
        requester=Requester(method, "someone", roles),
        vouched=Vouched(identifiers=frozenset(Identifier.parse(v) for v in vouched)),
    )


def make_policy(profile: str = "tls-server", **changes: Any) -> ProfilePolicy:
    profiles = default_profiles()
    profiles[profile] = replace(profiles[profile], **changes)
    return ProfilePolicy(Config(profiles=profiles))


async def decide(
    draft: CertificateDraft | None = None,
    req: EnrollmentRequest | None = None,
    **changes: Any,
) -> Decision:
    draft = draft or make_draft()
    return await make_policy(draft.profile, **changes).decide(req or make_request(), draft)


# Each case: profile changes, request, draft, and the decision's kind.
CASES = [
    # a. authentication
    pytest.param(
        {},
        make_request(AuthMethod.ACME_ACCOUNT, protocol="rest"),
        make_draft(),
        Deny,
        id="deny/auth_method_not_accepted_over_protocol",
    ),
    pytest.param(
        {},
        make_request(protocol="bench"),
        make_draft(),
        Deny,
        id="deny/auth_protocol_missing_from_profile",
    ),
    pytest.param(
        {},
        make_request(AuthMethod.ACME_ACCOUNT, protocol="acme"),
        make_draft(),
        Issue,
        id="issue/acme_account_over_acme",
    ),
    # b. key type
    pytest.param(
        {}, make_request(), make_draft(key_type="ed25519"), Deny, id="deny/key_ed25519_not_listed"
    ),
    pytest.param(
        {"rsa_min_bits": 3072},
        make_request(),
        make_draft(key_type="rsa-2048"),
        Deny,
        id="deny/key_rsa_below_minimum",
    ),
    pytest.param(
        {}, make_request(), make_draft(key_type="rsa-4096"), Issue, id="issue/key_rsa_4096"
    ),
    pytest.param(
        {"key_types": ("ec-p384",)},
        make_request(),
        make_draft(),
        Deny,
        id="deny/key_ec_p256_not_listed",
    ),
    pytest.param(
        {}, make_request(), make_draft(key_type="ec-p521"), Deny, id="deny/key_ec_p521_not_listed"
    ),
    # d. subject alternative names
    pytest.param(
        {},
        make_request(),
        make_draft(sans=("dns:www.example.com", "email:a@example.com")),
        Deny,
        id="deny/san_type_email_not_allowed",
    ),
    pytest.param(
        {"max_sans": 1},
        make_request(),
        make_draft(sans=("dns:www.example.com", "dns:example.com")),
        Deny,
        id="deny/san_too_many",
    ),
    pytest.param(
        {"max_sans": 1},
        make_request(),
        make_draft(sans=("dns:www.example.com", "dns:WWW.EXAMPLE.COM")),
        Issue,
        id="issue/san_duplicates_count_once",
    ),
    pytest.param(
        {},
        make_request(),
        make_draft(subject=(), sans=("dns:*.example.com",)),
        Issue,
        id="issue/san_wildcard",
    ),
    pytest.param(
        {"dns_suffixes": ("example.org",)},
        make_request(),
        make_draft(),
        Deny,
        id="deny/san_outside_dns_suffixes",
    ),
    pytest.param(
        {"dns_suffixes": ("example.com",)},
        make_request(),
        make_draft(sans=("dns:www.example.com", "dns:example.com")),
        Issue,
        id="issue/san_under_and_at_dns_suffix",
    ),
    pytest.param(
        {"dns_suffixes": ("ample.com",)},
        make_request(),
        make_draft(),
        Deny,
        id="deny/san_suffix_must_match_whole_labels",
    ),
    pytest.param(
        {"ip_ranges": ("192.0.2.0/24",)},
        make_request(),
        make_draft(subject=(), sans=("ip:198.51.100.1",)),
        Deny,
        id="deny/san_ip_outside_ranges",
    ),
    pytest.param(
        {"ip_ranges": ("192.0.2.0/24", "2001:db8::/32")},
        make_request(),
        make_draft(subject=(), sans=("ip:192.0.2.7", "ip:2001:db8::1")),
        Issue,
        id="issue/san_ip_within_ranges",
    ),
    pytest.param(
        {},
        make_request(vouched=("dns:example.com",)),
        make_draft(),
        Deny,
        id="deny/san_not_vouched",
    ),
    pytest.param(
        {},
        make_request(vouched=("dns:www.example.com", "dns:other.example.com")),
        make_draft(),
        Issue,
        id="issue/san_vouched",
    ),
    pytest.param(
        {},
        make_request(),
        make_draft(subject=((CN, "other.example.com"),)),
        Deny,
        id="deny/cn_not_in_sans",
    ),
    pytest.param(
        {},
        make_request(),
        make_draft(subject=((CN, "not a name"),), sans=()),
        Deny,
        id="deny/cn_not_a_name_and_no_sans",
    ),
    pytest.param(
        {"cn_in_sans": False}, make_request(), make_draft(sans=()), Deny, id="deny/require_san"
    ),
    pytest.param(
        {},
        make_request(),
        make_draft("device", subject=(), sans=()),
        Deny,
        id="deny/empty_subject_and_no_sans",
    ),
    pytest.param(
        {},
        make_request(),
        make_draft("tls-client", subject=((CN, "alice"),), sans=()),
        Issue,
        id="issue/tls_client_without_sans",
    ),
    pytest.param(
        {},
        make_request(),
        make_draft("device", sans=("uri:relative/path",)),
        Deny,
        id="deny/san_uri_relative",
    ),
    pytest.param(
        {},
        make_request(),
        make_draft("tls-client", sans=("email:not-an-address",)),
        Deny,
        id="deny/san_email_without_domain",
    ),
    # e. approval
    pytest.param(
        {"approval": "manual"}, make_request(), make_draft(), Hold, id="hold/manual_approval"
    ),
    pytest.param(
        {},
        make_request(AuthMethod.ANONYMOUS, roles=frozenset()),
        make_draft(),
        Hold,
        id="hold/anonymous",
    ),
    pytest.param(
        {}, make_request(roles=frozenset()), make_draft(), Hold, id="hold/token_without_role"
    ),
    pytest.param(
        {},
        make_request(roles=frozenset({Role.AUDITOR})),
        make_draft(),
        Hold,
        id="hold/token_auditor_role",
    ),
    pytest.param(
        {},
        make_request(roles=frozenset({Role.ADMINISTRATOR})),
        make_draft(),
        Issue,
        id="issue/token_administrator",
    ),
    pytest.param(
        {"auto_approve": ()}, make_request(), make_draft(), Hold, id="hold/auto_approve_empty"
    ),
    pytest.param(
        {},
        make_request(AuthMethod.EST_BASIC, protocol="est", roles=frozenset()),
        make_draft(),
        Issue,
        id="issue/est_basic_over_est",
    ),
]


@pytest.mark.parametrize(("changes", "req", "draft", "kind"), CASES)
async def test_decisions(
    changes: dict[str, Any], req: EnrollmentRequest, draft: CertificateDraft, kind: type
) -> None:
    decision = await decide(draft, req, **changes)
    assert isinstance(decision, kind), decision


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("www.example.com", id="ok/plain"),
        pytest.param("*.example.com", id="ok/wildcard"),
        pytest.param("xn--bcher-kva.example", id="ok/a_label"),
        pytest.param("a-b.example.com", id="ok/hyphen_inside"),
    ],
)
def test_valid_dns_names(name: str) -> None:
    assert is_dns_name(name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("localhost", id="bad_dns/single_label"),
        pytest.param("*.com", id="bad_dns/wildcard_over_one_label"),
        pytest.param("www.*.example.com", id="bad_dns/wildcard_not_leftmost"),
        pytest.param("w*.example.com", id="bad_dns/partial_wildcard"),
        pytest.param("-www.example.com", id="bad_dns/leading_hyphen"),
        pytest.param("www-.example.com", id="bad_dns/trailing_hyphen"),
        pytest.param("exa_mple.com", id="bad_dns/underscore"),
        pytest.param("a..example.com", id="bad_dns/empty_label"),
        pytest.param(f"{'a' * 64}.example.com", id="bad_dns/label_over_63"),
        pytest.param(".".join(["a" * 63] * 4) + ".com", id="bad_dns/over_253"),
        pytest.param("192.0.2.1", id="bad_dns/ip_address"),
        pytest.param("bücher.example", id="bad_dns/u_label"),
    ],
)
def test_invalid_dns_names(name: str) -> None:
    assert not is_dns_name(name)


async def test_invalid_dns_san_is_denied() -> None:
    draft = make_draft(subject=(), sans=("dns:exa_mple.com",))
    assert isinstance(await decide(draft), Deny)


async def test_subject_keeps_only_listed_attributes() -> None:
    subject = ((CN, "www.example.com"), (ORG, "Example"), (SERIAL, "42"))
    server = await decide(make_draft(subject=subject))
    device = await decide(make_draft("device", subject=subject))
    assert isinstance(server, Issue)
    assert isinstance(device, Issue)
    assert server.draft.subject == ((CN, "www.example.com"),)
    assert device.draft.subject == subject


async def test_cn_becomes_the_san_when_there_are_none() -> None:
    decision = await decide(make_draft(subject=((CN, "WWW.Example.COM"),), sans=()))
    assert isinstance(decision, Issue)
    assert decision.draft.sans == (Identifier.parse("dns:www.example.com"),)
    assert decision.draft.subject == ((CN, "www.example.com"),)


async def test_cn_ip_address_becomes_an_ip_san() -> None:
    decision = await decide(make_draft(subject=((CN, "192.0.2.1"),), sans=()))
    assert isinstance(decision, Issue)
    assert decision.draft.sans == (Identifier.parse("ip:192.0.2.1"),)


async def test_sans_are_lowercased_and_deduplicated() -> None:
    sans = ("dns:WWW.example.com", "dns:www.example.com", "dns:Example.com")
    decision = await decide(make_draft(sans=sans))
    assert isinstance(decision, Issue)
    assert [str(s) for s in decision.draft.sans] == ["dns:www.example.com", "dns:example.com"]


async def test_hold_carries_the_shaped_draft() -> None:
    subject = ((CN, "www.example.com"), (ORG, "dropped"))
    decision = await decide(make_draft(subject=subject), approval="manual")
    assert isinstance(decision, Hold)
    assert decision.draft.subject == ((CN, "www.example.com"),)


async def test_unknown_profile_is_denied() -> None:
    decision = await ProfilePolicy(Config()).decide(make_request(), make_draft("nope"))
    assert isinstance(decision, Deny)


async def test_the_input_draft_is_not_changed() -> None:
    draft = make_draft(subject=((CN, "WWW.example.com"), (ORG, "x")), sans=())
    before = draft.to_json()
    await decide(draft)
    assert draft.to_json() == before


def test_create_builds_the_module_and_refuses_options() -> None:
    module: PolicyModule = create(Config(), {})
    assert module.name == "profiles"
    with pytest.raises(ConfigError):
        create(Config(), {"unexpected": True})


def test_draft_for_fills_the_draft_from_profile_and_csr() -> None:
    csr = verify_csr(make_csr(rsa_key()))
    profile = default_profiles()["tls-server"]
    draft = draft_for(profile, csr)
    assert draft.profile == "tls-server"
    assert draft.issuer == profile.issuer
    assert draft.subject == csr.subject
    assert draft.sans == csr.sans
    assert draft.validity == timedelta(days=profile.validity_days)
    assert draft.key_type == "rsa-2048"
    assert draft.key_usage == {"digitalSignature", "keyEncipherment"}
    assert draft.extended_key_usage == profile.extended_key_usage
    assert draft.certificate_policies == profile.certificate_policies
    ec_draft = draft_for(profile, verify_csr(make_csr()))
    assert ec_draft.key_usage == {"digitalSignature"}  # RFC 8813: no keyEncipherment for ECDSA


LONG_NAME = "a" * 63 + ".example.com"  # a valid DNS name of 75 characters


@pytest.mark.parametrize(
    "sans", [pytest.param((f"dns:{LONG_NAME}",), id="san"), pytest.param((), id="cn_as_san")]
)
async def test_a_cn_over_64_characters_is_dropped_when_it_is_a_san(sans: tuple[str, ...]) -> None:
    """RFC 5280's ub-common-name is 64; the SAN carries the name (BR §7.1.4.3: the CN is
    optional), as Boulder does."""
    decision = await decide(make_draft(subject=((CN, LONG_NAME),), sans=sans))
    assert isinstance(decision, Issue), decision
    assert decision.draft.subject == ()
    assert decision.draft.sans == (Identifier.parse(f"dns:{LONG_NAME}"),)


async def test_a_cn_over_64_characters_that_is_not_a_san_is_denied() -> None:
    draft = make_draft("device", subject=((CN, LONG_NAME),), sans=("dns:other.example.com",))
    decision = await decide(draft)
    assert isinstance(decision, Deny), decision
    assert "64" in decision.reason
