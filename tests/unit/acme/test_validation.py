"""The validator's address checks (``protocols.acme.validation``), without the network: the
deny list holds also for an IPv4 address an IPv6 one stands for, and the unspecified address
is never connected to."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from protocols.acme.config import ACMEConfig
from protocols.acme.problems import ProblemType
from protocols.acme.validation import ValidationFailed, Validator

DENY = ("127.0.0.0/8", "::1/128", "10.0.0.0/8")
LOOPBACK_VIA = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::ffff:127.0.0.1", id="ipv4_mapped"),
    pytest.param("2002:7f00:1::1", id="6to4"),
    pytest.param("2001:0:4136:e378:8000:63bf:80ff:fffe", id="teredo_client"),
    pytest.param("64:ff9b::7f00:1", id="nat64"),
    pytest.param("::ffff:10.1.2.3", id="ipv4_mapped_private"),
]
UNSPECIFIED = ["0.0.0.0", "::", "::ffff:0.0.0.0"]  # noqa: S104 - addresses under test


def validator(deny: tuple[str, ...] = DENY) -> Validator:
    return Validator(ACMEConfig(validation_deny_ranges=deny))


@pytest.mark.parametrize("text", LOOPBACK_VIA)
def test_an_address_standing_for_a_denied_one_is_denied(text: str) -> None:
    assert validator().is_denied(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", UNSPECIFIED)
def test_the_unspecified_address_is_denied_even_with_no_deny_list(text: str) -> None:
    assert validator(()).is_denied(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", ["192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1", "::2"])
def test_other_addresses_are_allowed(text: str) -> None:
    assert not validator().is_denied(ipaddress.ip_address(text))


@dataclass(frozen=True)
class _Record:
    address: str


@dataclass(frozen=True)
class FakeDNS(Validator):
    """A validator whose DNS answers ``records`` ({rdtype: [address]}) for every name."""

    records: tuple[tuple[str, tuple[str, ...]], ...] = ()

    async def _query(self, name: str, rdtype: str) -> Sequence[Any]:
        return [_Record(a) for a in dict(self.records).get(rdtype, ())]

    def resolver(self) -> Any:
        return object()  # not None: addresses() asks _query


async def test_a_name_answered_with_a_mapped_denied_address_is_refused() -> None:
    dns = FakeDNS(
        ACMEConfig(validation_deny_ranges=DENY),
        records=(("A", ("127.0.0.1",)), ("AAAA", ("::ffff:127.0.0.1",))),
    )
    with pytest.raises(ValidationFailed) as info:
        await dns.addresses("mapped.example.com")
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER


@pytest.mark.parametrize("text", ["::ffff:127.0.0.1", "0.0.0.0", "10.0.0.1"])  # noqa: S104
async def test_an_address_itself_is_checked_too(text: str) -> None:
    """tls-alpn-01 connects to what ``addresses`` gives for an IP identifier: it returned
    the address unchecked."""
    with pytest.raises(ValidationFailed) as info:
        await validator().addresses(text)
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER


@pytest.mark.parametrize(
    "url",
    ["http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://[::]:80/x"],
)
def test_a_redirect_to_an_address_standing_for_a_denied_one_is_refused(url: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        validator()._check_url(url)
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER


@pytest.mark.parametrize(
    ("http01_port", "url", "followed"),
    [
        pytest.param(80, "http://a.example/x", True, id="http/default_port"),
        pytest.param(80, "https://a.example/x", True, id="https/default_port"),
        pytest.param(80, "https://a.example:443/x", True, id="https/443"),
        pytest.param(80, "http://a.example:8080/x", False, id="http/other_port"),
        pytest.param(80, "http://a.example:443/x", False, id="http/on_443"),
        pytest.param(80, "https://a.example:80/x", False, id="https/on_80"),
        pytest.param(80, "https://a.example:22/x", False, id="https/ssh"),
        pytest.param(5002, "http://a.example:5002/x", True, id="http/configured_port"),
        pytest.param(5002, "http://a.example/x", False, id="http/80_when_configured_otherwise"),
        pytest.param(80, "http://u:p@a.example:22/x", False, id="userinfo_port"),
    ],
)
def test_redirects_go_only_to_the_http01_port_or_443(
    http01_port: int, url: str, followed: bool
) -> None:
    check = Validator(ACMEConfig(http01_port=http01_port))._check_url
    if followed:
        check(url)
        return
    with pytest.raises(ValidationFailed) as info:
        check(url)
    assert info.value.type is ProblemType.CONNECTION
