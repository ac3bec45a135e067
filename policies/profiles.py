"""The default policy module: each request judged against its ``[profiles.<name>]`` table.

``ProfilePolicy.decide`` runs five steps, in this order, each a small function below:

a. authentication: the profile accepts this proof of identity over this protocol;
b. key type: the profile allows this kind of subject key;
c. subject: only the attributes the profile lists are kept;
d. subject alternative names: the types, number, syntax and namespaces the profile allows,
   the identifiers the front end vouched for, and the CN among them (a CN longer than the 64
   characters X.520 allows is dropped when it is one of the SANs, as Boulder does: the SAN
   carries the name);
e. approval: issue now, or hold for an administrator.

A refusal is an outcome (``Deny`` with a reason the requester sees), not an exception. (A
subject attribute no certificate can carry, such as an empty CN or a serialNumber that is not
a PrintableString, never gets here: ``verify_csr`` refuses it as a bad CSR.) The
draft is shaped with ``dataclasses.replace`` and never mutated. Deliberately not checked here:
CAA records, public-suffix wildcards and rate limits, which belong to other modules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, assert_never
from urllib.parse import urlsplit

from server.ca.build import CN_UPPER_BOUND
from server.config import SUBJECT_ATTRIBUTES, Config, ProfileConfig
from server.errors import ConfigError
from server.model import (
    AuthMethod,
    CertificateDraft,
    Decision,
    Deny,
    EnrollmentRequest,
    Hold,
    Identifier,
    IdentifierType,
    Issue,
    Role,
    SubjectAttrs,
)

CN = SUBJECT_ATTRIBUTES["CN"]
_VOUCHABLE = (IdentifierType.DNS, IdentifierType.IP)
_SAN_WORDS = {
    IdentifierType.DNS: "DNS name",
    IdentifierType.IP: "IP address",
    IdentifierType.EMAIL: "email address",
    IdentifierType.URI: "absolute URI",
}
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[!-~]+\Z")  # scheme ":" printable ASCII, no spaces
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Refused(Exception):
    """A step's refusal; ``decide`` turns it into ``Deny(reason)``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProfilePolicy:
    """Applies ``config.profiles`` to every request; registered as the ``profiles`` module."""

    name = "profiles"

    def __init__(self, config: Config) -> None:
        self._profiles = dict(config.profiles)
        # Parsed once: the configuration already checked that each range parses.
        self._networks = {
            name: tuple(ipaddress.ip_network(r, strict=False) for r in profile.ip_ranges)
            for name, profile in self._profiles.items()
        }

    async def decide(self, req: EnrollmentRequest, draft: CertificateDraft) -> Decision:
        profile = self._profiles.get(draft.profile)
        if profile is None:
            return Deny(f"there is no profile named {draft.profile!r}")
        try:
            check_authentication(profile, req)  # a.
            check_key_type(profile, draft.key_type)  # b.
            draft = keep_subject_attributes(profile, draft)  # c.
            draft = shape_sans(profile, req, draft, self._networks[profile.name])  # d.
        except _Refused as refusal:
            return Deny(refusal.reason)
        return decide_approval(profile, req, draft)  # e.


def create(config: Config, options: Mapping[str, Any]) -> ProfilePolicy:
    """The entry point ``profiles`` in ``certforge.policies``; it takes no options."""
    if options:
        raise ConfigError(
            f"[policy.options.profiles]: unknown option {sorted(options)[0]!r}; "
            "profiles are configured under [profiles.<name>]"
        )
    return ProfilePolicy(config)


# a. -------------------------------------------------------------------- authentication
def check_authentication(profile: ProfileConfig, req: EnrollmentRequest) -> None:
    """The requester's proof must be one the profile accepts over this protocol.

    A protocol missing from the profile's ``auth`` table accepts nothing.
    """
    method, protocol = req.requester.method, req.protocol
    if str(method) not in profile.auth.get(protocol, ()):
        raise _Refused(f"profile {profile.name} does not accept {method} requests over {protocol}")


# b. ---------------------------------------------------------------------- key type
def check_key_type(profile: ProfileConfig, key_type: str) -> None:
    """The entry "rsa" allows RSA keys of ``rsa_min_bits`` or more; others must be listed."""
    if key_type in profile.key_types:
        return
    size = key_type.removeprefix("rsa-")
    if key_type.startswith("rsa-") and size.isdigit() and "rsa" in profile.key_types:
        bits = int(size)
        if bits >= profile.rsa_min_bits:
            return
        raise _Refused(
            f"profile {profile.name} needs RSA keys of at least "
            f"{profile.rsa_min_bits} bits, not {bits}"
        )
    raise _Refused(
        f"profile {profile.name} does not allow {key_type} keys "
        f"(allowed: {', '.join(profile.key_types)})"
    )


# c. ----------------------------------------------------------------------- subject
def keep_subject_attributes(profile: ProfileConfig, draft: CertificateDraft) -> CertificateDraft:
    """Drop subject attributes the profile does not list: the CA vouches only for those."""
    allowed = {SUBJECT_ATTRIBUTES[name] for name in profile.subject_attributes}
    subject = tuple((oid, value) for oid, value in draft.subject if oid in allowed)
    return draft if subject == draft.subject else replace(draft, subject=subject)


# d. ------------------------------------------------------- subject alternative names
def shape_sans(
    profile: ProfileConfig,
    req: EnrollmentRequest,
    draft: CertificateDraft,
    networks: Sequence[_Network],
) -> CertificateDraft:
    """Check and normalize the SANs, and reconcile the CN with them."""
    sans = normalize_sans(profile, with_cn_as_san(profile, draft))
    check_namespaces(profile, sans, networks)
    check_vouched(req, sans)
    subject = drop_long_common_names(check_cn_in_sans(profile, draft.subject, sans), sans)
    if profile.require_san and not sans:
        raise _Refused(f"profile {profile.name} needs at least one subject alternative name")
    if not subject and not sans:
        # RFC 5280 §4.1.2.6: an empty subject needs a subjectAltName.
        raise _Refused("the request has neither a subject nor a subject alternative name")
    if subject == draft.subject and sans == draft.sans:
        return draft
    return replace(draft, subject=subject, sans=sans)


def with_cn_as_san(profile: ProfileConfig, draft: CertificateDraft) -> tuple[Identifier, ...]:
    """With ``cn_in_sans`` and no SANs, the CN (a DNS name or an IP address) becomes the SAN."""
    common_names = [value for oid, value in draft.subject if oid == CN]
    if draft.sans or not profile.cn_in_sans or not common_names:
        return draft.sans
    identifier = identifier_for_cn(common_names[0])
    if identifier is None:
        raise _Refused(
            f"the CN {common_names[0]!r} is neither a DNS name nor an IP address, "
            "and the request has no subject alternative names"
        )
    return (identifier,)


def normalize_sans(profile: ProfileConfig, sans: Sequence[Identifier]) -> tuple[Identifier, ...]:
    """Allowed types only, DNS names lowercased and valid, duplicates removed, not too many."""
    normalized: dict[Identifier, None] = {}
    for san in sans:
        if str(san.type) not in profile.san_types:
            raise _Refused(
                f"profile {profile.name} does not allow {san.type} names "
                f"(allowed: {', '.join(profile.san_types)})"
            )
        san = _checked_san(san)
        normalized[san] = None
    if len(normalized) > profile.max_sans:
        raise _Refused(
            f"profile {profile.name} allows at most {profile.max_sans} subject alternative names"
        )
    return tuple(normalized)


def _checked_san(san: Identifier) -> Identifier:
    """Refuse a SAN whose syntax RFC 5280 §4.2.1.6 forbids; DNS names come back lowercased."""
    match san.type:
        case IdentifierType.DNS:
            san = Identifier(IdentifierType.DNS, san.value.lower())
            is_valid = is_dns_name(san.value)
        case IdentifierType.EMAIL:
            is_valid = is_email_address(san.value)
        case IdentifierType.URI:
            is_valid = is_absolute_uri(san.value)
        case IdentifierType.IP:
            is_valid = True  # parsed into an address by the CSR reader already
        case _:
            assert_never(san.type)
    if not is_valid:
        raise _Refused(f"{san.value!r} is not a valid {_SAN_WORDS[san.type]}")
    return san


def is_dns_name(name: str) -> bool:
    """A lowercase host name in preferred name syntax (RFC 1034 §3.5, RFC 5280 §4.2.1.6).

    LDH labels of 1 to 63 octets, at most 253 in all, at least two labels, a top-level label
    that is not all digits (which would be an IP address), and a wildcard only as the whole
    leftmost label, above at least two labels (so ``*.com`` is refused).
    """
    if len(name) > 253:
        return False
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    return (
        len(labels) >= 2
        and all(_LDH_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def is_email_address(value: str) -> bool:
    """An ASCII addr-spec with a valid domain (RFC 5280 §4.2.1.6, rfc822Name; no SMTPUTF8)."""
    local, _, domain = value.partition("@")
    return (
        value.count("@") == 1
        and bool(local)
        and value.isascii()
        and value.isprintable()
        and " " not in value
        and is_dns_name(domain.lower())
    )


def is_absolute_uri(value: str) -> bool:
    """RFC 5280 §4.2.1.6: a URI "MUST include both a scheme ... and a scheme-specific-part",
    and "URIs that include an authority ... MUST include a fully qualified domain name or IP
    address as the host"."""
    if not _URI.match(value):
        return False
    try:
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port  # the port is parsed to check its range
    except ValueError:
        return False
    if not value.partition(":")[2].startswith("//"):
        return True  # no authority: urn:, mailto:...
    return host is not None and identifier_for_cn(host) is not None


def check_namespaces(
    profile: ProfileConfig, sans: Sequence[Identifier], networks: Sequence[_Network]
) -> None:
    """DNS names under ``dns_suffixes`` and addresses within ``ip_ranges``, when set."""
    for san in sans:
        if (
            san.type is IdentifierType.DNS
            and profile.dns_suffixes
            and not any(san.value == s or san.value.endswith(f".{s}") for s in profile.dns_suffixes)
        ):
            raise _Refused(f"{san.value} is not under a domain profile {profile.name} allows")
        if san.type is IdentifierType.IP and networks:
            address = ipaddress.ip_address(san.value)
            if not any(address in network for network in networks):
                raise _Refused(
                    f"{san.value} is not in an address range profile {profile.name} allows"
                )


def check_vouched(req: EnrollmentRequest, sans: Sequence[Identifier]) -> None:
    """When the front end vouched for identifiers (ACME authorizations), DNS names and IP
    addresses must be among them (RFC 8555 §7.4: the CSR's identifiers must match the
    order's)."""
    vouched = {_normalized(i) for i in req.vouched.identifiers}
    if not vouched:
        return
    for san in sans:
        if san.type in _VOUCHABLE and san not in vouched:
            raise _Refused(f"{san} was not validated for this request")


def check_cn_in_sans(
    profile: ProfileConfig, subject: SubjectAttrs, sans: Sequence[Identifier]
) -> SubjectAttrs:
    """With ``cn_in_sans``, every CN must be one of the SANs; it takes the SAN's spelling.

    CA/Browser Forum BR §7.1.4.3: if present, the commonName "MUST contain exactly one entry
    that is one of the values contained in the Subject Alternative Name extension".
    """
    if not profile.cn_in_sans:
        return subject
    shaped: list[tuple[str, str]] = []
    for oid, value in subject:
        if oid == CN:
            identifier = identifier_for_cn(value)
            if identifier is None or identifier not in sans:
                raise _Refused(f"the CN {value!r} is not one of the subject alternative names")
            value = identifier.value
        shaped.append((oid, value))
    return tuple(shaped)


def drop_long_common_names(subject: SubjectAttrs, sans: Sequence[Identifier]) -> SubjectAttrs:
    """A CN longer than ub-common-name (64, RFC 5280 Appendix A.1) cannot be in a certificate;
    when it is one of the SANs the certificate loses nothing without it (CA/Browser Forum BR
    §7.1.4.3 makes the CN optional). Any other is refused."""
    kept: list[tuple[str, str]] = []
    for oid, value in subject:
        if oid == CN and len(value) > CN_UPPER_BOUND:
            if identifier_for_cn(value) in sans:
                continue
            raise _Refused(
                f"the CN is longer than {CN_UPPER_BOUND} characters and not one of the "
                "subject alternative names"
            )
        kept.append((oid, value))
    return tuple(kept)


def identifier_for_cn(value: str) -> Identifier | None:
    """The DNS name or IP address a CN spells, normalized as SANs are; None if neither."""
    if ":" in value or value.replace(".", "").isdigit():  # else not an address: skip the raise
        try:
            return Identifier(IdentifierType.IP, str(ipaddress.ip_address(value)))
        except ValueError:
            pass
    name = value.lower()
    return Identifier(IdentifierType.DNS, name) if is_dns_name(name) else None


def _normalized(identifier: Identifier) -> Identifier:
    if identifier.type is IdentifierType.DNS:
        return Identifier(IdentifierType.DNS, identifier.value.lower().rstrip("."))
    if identifier.type is IdentifierType.IP:
        return Identifier(IdentifierType.IP, str(ipaddress.ip_address(identifier.value)))
    return identifier


# e. ---------------------------------------------------------------------- approval
def decide_approval(
    profile: ProfileConfig, req: EnrollmentRequest, draft: CertificateDraft
) -> Decision:
    """Issue now when the profile auto-approves this proof of identity; otherwise hold.

    A token proves only that its holder is known: it issues at once only for the
    requester and administrator roles.
    """
    if profile.approval == "manual":
        return Hold(draft)
    requester = req.requester
    if str(requester.method) in profile.auto_approve and (
        requester.method is not AuthMethod.TOKEN
        or requester.roles & {Role.REQUESTER, Role.ADMINISTRATOR}
    ):
        return Issue(draft)
    return Hold(draft, "waiting for an administrator's approval")
