"""The ACME front end's table, ``[acme]``: its settings, their defaults and validation."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from server.config import Config, Section, Table, parse_host_port
from server.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ACMEConfig:
    http01_port: int = 80
    tlsalpn01_port: int = 443
    resolvers: tuple[str, ...] = ()
    eab_required: bool = False
    terms_of_service: str = ""  # URL shown in the directory's meta; clients must agree
    website: str = ""
    caa_identities: tuple[str, ...] = ()  # non-empty: CAA (RFC 8659) checked for these
    profiles: tuple[str, ...] = ()  # profiles ACME may use; empty: all that accept acme
    default_profile: str = ""  # empty: [policy] default_profile
    authz_reuse: bool = True  # reuse an account's still-valid authorization
    authz_lifetime_hours: int = 720  # how long a valid authorization lasts
    order_lifetime_hours: int = 168  # how long a pending order and its authorizations live
    nonce_lifetime_seconds: int = 3600
    validation_timeout_seconds: float = 10.0
    validation_deny_ranges: tuple[str, ...] = ()  # addresses validation never connects to
    orders_per_account_per_hour: int = 0  # 0: no limit
    orders_per_identifier_per_hour: int = 0  # 0: no limit
    accounts_per_address_per_hour: int = 0  # 0: no limit
    ari_retry_after_seconds: int = 21600  # Retry-After of renewalInfo answers


def parse(t: Table, core: Config) -> ACMEConfig:
    d = ACMEConfig()
    resolvers = t.strings("resolvers", ())
    for r in resolvers:
        parse_host_port(r, t.name("resolvers"))
    cfg = ACMEConfig(
        http01_port=t.port("http01_port", d.http01_port),
        tlsalpn01_port=t.port("tlsalpn01_port", d.tlsalpn01_port),
        resolvers=resolvers,
        eab_required=t.get("eab_required", bool, d.eab_required),
        terms_of_service=t.get("terms_of_service", str, d.terms_of_service),
        website=t.get("website", str, d.website),
        caa_identities=tuple(s.lower() for s in t.strings("caa_identities", ())),
        profiles=t.strings("profiles", ()),
        default_profile=t.get("default_profile", str, d.default_profile),
        authz_reuse=t.get("authz_reuse", bool, d.authz_reuse),
        authz_lifetime_hours=t.positive("authz_lifetime_hours", d.authz_lifetime_hours),
        order_lifetime_hours=t.positive("order_lifetime_hours", d.order_lifetime_hours),
        nonce_lifetime_seconds=t.positive("nonce_lifetime_seconds", d.nonce_lifetime_seconds),
        validation_timeout_seconds=t.get(
            "validation_timeout_seconds", float, d.validation_timeout_seconds
        ),
        validation_deny_ranges=t.strings("validation_deny_ranges", ()),
        orders_per_account_per_hour=_limit(t, "orders_per_account_per_hour"),
        orders_per_identifier_per_hour=_limit(t, "orders_per_identifier_per_hour"),
        accounts_per_address_per_hour=_limit(t, "accounts_per_address_per_hour"),
        ari_retry_after_seconds=t.positive("ari_retry_after_seconds", d.ari_retry_after_seconds),
    )
    t.done()
    for r in cfg.validation_deny_ranges:
        try:
            ipaddress.ip_network(r, strict=False)
        except ValueError:
            raise ConfigError(
                f"{t.name('validation_deny_ranges')}: {r!r} is not an address range"
            ) from None
    if cfg.validation_timeout_seconds <= 0:
        raise ConfigError(f"{t.name('validation_timeout_seconds')}: must be positive")
    for name in (*cfg.profiles, *([cfg.default_profile] if cfg.default_profile else [])):
        if name not in core.profiles:
            raise ConfigError(f"[acme] profiles: no profile named {name!r}")
    return cfg


def _limit(t: Table, key: str) -> int:
    value = t.get(key, int, 0)
    if value < 0:
        raise ConfigError(f"{t.name(key)}: must be 0 (no limit) or more, got {value}")
    return value


EXAMPLE = """\
[acme]
http01_port = 80               # port that http-01 validation connects to
tlsalpn01_port = 443           # port that tls-alpn-01 validation connects to
resolvers = []                 # DNS servers ("host:port") used for validation; empty = system
eab_required = false           # true: newAccount must carry External Account Binding
                               # (credentials from `certforge acme eab create`)
terms_of_service = ""          # URL in the directory's meta; set: clients must agree to it
website = ""                   # URL in the directory's meta
caa_identities = []            # set: CAA records (RFC 8659) must allow one of these domains
profiles = []                  # profiles ACME orders may name; empty: all accepting acme
default_profile = ""           # profile of orders naming none; empty: [policy] default_profile
authz_reuse = true             # reuse an account's still-valid authorization for a new order
authz_lifetime_hours = 720     # how long a valid authorization can be reused
order_lifetime_hours = 168     # how long a pending order and its authorizations live
nonce_lifetime_seconds = 3600  # an unused Replay-Nonce expires after this
validation_timeout_seconds = 10.0  # each http-01, dns-01 or tls-alpn-01 attempt
validation_deny_ranges = []    # address ranges validation never connects to ("10.0.0.0/8")
orders_per_account_per_hour = 0      # rate limit, answered with rateLimited; 0 = none
orders_per_identifier_per_hour = 0   # rate limit per DNS name or IP address; 0 = none
accounts_per_address_per_hour = 0    # new accounts per client IP address; 0 = none
ari_retry_after_seconds = 21600      # Retry-After of renewalInfo (RFC 9773) answers
"""

SECTION = Section("acme", ACMEConfig, parse, EXAMPLE)
