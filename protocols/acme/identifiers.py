"""Order identifiers (RFC 8555 §7.1.3, §9.7.7; RFC 8738) and which profile an order uses.

Identifiers are checked against the order's profile at newOrder: its SAN types, DNS
suffixes, IP ranges and maximum count, so an identifier the profile would refuse at finalize
is refused at once with rejectedIdentifier (subproblems name each one, RFC 8555 §6.7.1).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from protocols.acme.config import SECTION
from protocols.acme.problems import ACMEProblem, ProblemType, Subproblem
from server.config import Config, ProfileConfig
from server.model import AuthMethod, Identifier, IdentifierType

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
MAX_IDENTIFIERS = 100


def acme_profiles(config: Config) -> dict[str, ProfileConfig]:
    """The profiles ACME may use: ``[acme] profiles``, or every profile accepting ACME
    accounts."""
    chosen = SECTION.of(config).profiles or tuple(
        name
        for name, p in config.profiles.items()
        if str(AuthMethod.ACME_ACCOUNT) in p.auth.get("acme", ())
    )
    return {name: config.profiles[name] for name in chosen}


def order_profile(config: Config, requested: object) -> ProfileConfig:
    """The ACME profiles draft: the order's "profile" must be one the directory lists."""
    allowed = acme_profiles(config)
    if requested is None:
        name = SECTION.of(config).default_profile or config.policy.default_profile
        if name not in allowed:
            raise ACMEProblem(
                ProblemType.INVALID_PROFILE, f"name a profile: one of {', '.join(allowed)}"
            )
        return allowed[name]
    if not isinstance(requested, str) or requested not in allowed:
        raise ACMEProblem(
            ProblemType.INVALID_PROFILE,
            f"profile {requested!r} is not offered; offered: {', '.join(allowed)}",
        )
    return allowed[requested]


def is_dns_name(name: str) -> bool:
    labels = name.split(".")
    return (
        len(name) <= 253
        and len(labels) >= 2
        and all(_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def parse_identifier(obj: object) -> tuple[Identifier, bool]:
    """One {"type", "value"}: the identifier (wildcard label removed) and whether it was a
    wildcard."""
    if not isinstance(obj, dict) or not isinstance(obj.get("value"), str):
        raise ACMEProblem(ProblemType.MALFORMED, 'each identifier is {"type": ..., "value": ...}')
    type_, value = obj.get("type"), obj["value"]
    if type_ == "ip":
        return parse_ip(value), False
    if type_ != "dns":
        raise ACMEProblem(
            ProblemType.UNSUPPORTED_IDENTIFIER, f"identifier type {type_!r} is not dns or ip"
        )
    # RFC 5280 §4.2.1.6: a dNSName is in the preferred name syntax (RFC 1034 §3.5, RFC 1123
    # §2.1), IDNs as A-labels (RFC 5890 §2.3.2.1). Refused, not rewritten: checked before
    # lower-casing, which folds "\u212a" (KELVIN SIGN) onto "k", and with no trailing dot
    # taken off, so the order names exactly what the client asked for.
    if not value.isascii() or value.endswith("."):
        raise ACMEProblem(
            ProblemType.REJECTED_IDENTIFIER,
            f"{value!r} is not a valid DNS name: ASCII only (IDNs as A-labels), no final dot",
        )
    name = value.lower()  # RFC 4343: DNS names are case-insensitive
    wildcard = name.startswith("*.")
    base = name[2:] if wildcard else name
    if not is_dns_name(base) or not all(_is_a_label(label) for label in base.split(".")):
        raise ACMEProblem(ProblemType.REJECTED_IDENTIFIER, f"{value!r} is not a valid DNS name")
    return Identifier(IdentifierType.DNS, base), wildcard


def _is_a_label(label: str) -> bool:
    """An "xn--" label must be Punycode (RFC 5890 §2.3.2.1: an A-label decodes to a U-label)."""
    if not label.startswith("xn--"):
        return True
    try:
        return bool(label[4:].encode("ascii").decode("punycode"))
    except UnicodeError:
        return False


def parse_ip(value: str) -> Identifier:
    """RFC 8738 §3: an "ip" identifier is an address a server can have (certified so that
    clients connect to it). Refused: the unspecified address (RFC 1122 §3.2.1.3: never a
    destination), multicast addresses and the limited broadcast address (no TLS server
    answers at them), and IPv4-mapped IPv6 addresses (RFC 4291 §2.5.5.2: the IPv4 address
    is the identifier; as mapped, it named a second identifier for one address)."""
    if "%" in value:
        # RFC 8738 §3: the value is the RFC 1123 §2.1 or RFC 5952 §4 text form, which has no
        # zone (RFC 4007 §11); Python's parser accepts one, with any characters in it.
        raise ACMEProblem(
            ProblemType.MALFORMED, f"{value!r} is not an IP address: no zone (RFC 8738 §3)"
        )
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ACMEProblem(
            ProblemType.MALFORMED, f"{value!r} is not an IP address (RFC 8738)"
        ) from None
    refusal = _not_a_server_address(address)
    if refusal:
        raise ACMEProblem(
            ProblemType.REJECTED_IDENTIFIER, f"{value} is {refusal}, not a server's address"
        )
    if str(address) != value:
        # RFC 8738 §3: the value MUST be the address's RFC 1123 §2.1 (IPv4) or RFC 5952 §4
        # (IPv6: lower case, zeros compressed) text form: refused, not rewritten.
        raise ACMEProblem(
            ProblemType.MALFORMED,
            f"{value!r} is not in the RFC 5952 text form of the address: {address}",
        )
    return Identifier(IdentifierType.IP, value)


def _not_a_server_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address == ipaddress.IPv4Address("255.255.255.255"):
        return "the limited broadcast address"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return "an IPv4-mapped address (order the IPv4 address)"
    return ""


def parse_identifiers(value: object, profile: ProfileConfig) -> list[tuple[Identifier, bool]]:
    if not isinstance(value, list) or not value:
        raise ACMEProblem(ProblemType.MALFORMED, '"identifiers" must be a non-empty array')
    if len(value) > min(MAX_IDENTIFIERS, profile.max_sans):
        raise ACMEProblem(
            ProblemType.REJECTED_IDENTIFIER,
            f"at most {min(MAX_IDENTIFIERS, profile.max_sans)} identifiers per order",
        )
    parsed = list(dict.fromkeys(parse_identifier(v) for v in value))
    refused = [s for s in (_refusal(i, w, profile) for i, w in parsed) if s is not None]
    if len(refused) == 1:
        raise ACMEProblem(refused[0].type, refused[0].detail, subproblems=tuple(refused))
    if refused:
        raise ACMEProblem(
            ProblemType.REJECTED_IDENTIFIER,
            f"{len(refused)} identifiers are refused",
            subproblems=tuple(refused),
        )
    return parsed


def _refusal(identifier: Identifier, wildcard: bool, profile: ProfileConfig) -> Subproblem | None:
    shown = {"type": str(identifier.type), "value": ("*." if wildcard else "") + identifier.value}
    if str(identifier.type) not in profile.san_types:
        return Subproblem(
            ProblemType.REJECTED_IDENTIFIER,
            f"profile {profile.name} does not allow {identifier.type} identifiers",
            shown,
        )
    if identifier.type is IdentifierType.DNS and profile.dns_suffixes:
        v = identifier.value
        if not any(v == s or v.endswith(f".{s}") for s in profile.dns_suffixes):
            return Subproblem(
                ProblemType.REJECTED_IDENTIFIER,
                f"{v} is not under a domain profile {profile.name} allows",
                shown,
            )
    if identifier.type is IdentifierType.IP and profile.ip_ranges:
        address = ipaddress.ip_address(identifier.value)
        if not any(address in ipaddress.ip_network(r, strict=False) for r in profile.ip_ranges):
            return Subproblem(
                ProblemType.REJECTED_IDENTIFIER,
                f"{address} is not in an address range profile {profile.name} allows",
                shown,
            )
    return None


def shown_identifier(identifier: Identifier, wildcard: bool) -> dict[str, Any]:
    value = ("*." if wildcard else "") + identifier.value
    return {"type": str(identifier.type), "value": value}
