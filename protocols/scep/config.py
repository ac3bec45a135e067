"""The SCEP front end's table, ``[scep]``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from server.config import Config, Section, Table
from server.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SCEPConfig:
    # The profile /scep enrolls into (/scep/<profile> names others).
    default_profile: str = "device"
    # One-time challenge passwords (``certforge scep challenge``; EST shares them).
    challenge_lifetime_seconds: int = 3600
    # Offer and accept SHA-1 and DES3 (GetCACaps "SHA-1", "DES3") for legacy devices.
    legacy_algorithms: bool = False
    # profile name -> a static challenge password accepted (many times) for that profile.
    static_challenges: Mapping[str, str] = field(default_factory=dict)
    # The RSA RA certificate, made when the SCEP issuing CA's key is not RSA.
    ra_validity_days: int = 365
    ra_renew_before_days: int = 30


def parse(t: Table, core: Config) -> SCEPConfig:
    profiles = core.profiles
    d = SCEPConfig()
    static_t = t.table("static_challenges")
    static: dict[str, str] = {}
    for profile in static_t.raw:
        if profile not in profiles:
            raise ConfigError(f"{static_t.name(profile)}: no profile named {profile!r}")
        password = static_t.get(profile, str, "")
        if len(password) < 8:
            raise ConfigError(f"{static_t.name(profile)}: a static challenge needs 8+ characters")
        static[profile] = password
    static_t.done()
    default_profile = t.get("default_profile", str, d.default_profile)
    if default_profile not in profiles:
        raise ConfigError(f"{t.name('default_profile')}: no profile named {default_profile!r}")
    cfg = SCEPConfig(
        default_profile=default_profile,
        challenge_lifetime_seconds=t.positive(
            "challenge_lifetime_seconds", d.challenge_lifetime_seconds
        ),
        legacy_algorithms=t.get("legacy_algorithms", bool, d.legacy_algorithms),
        static_challenges=static,
        ra_validity_days=t.positive("ra_validity_days", d.ra_validity_days),
        ra_renew_before_days=t.positive("ra_renew_before_days", d.ra_renew_before_days),
    )
    t.done()
    if cfg.ra_renew_before_days >= cfg.ra_validity_days:
        raise ConfigError(f"{t.name('ra_renew_before_days')}: must be less than ra_validity_days")
    return cfg


EXAMPLE = """\
[scep]
# SCEP (RFC 8894) at http://HOST:8080/scep and http://HOST:8080/scep/<profile>.
default_profile = "device"     # the profile /scep enrolls into
challenge_lifetime_seconds = 3600  # one-time challenges (`certforge scep challenge`; EST too)
legacy_algorithms = false      # true: also offer and accept SHA-1 and DES3, and read DES
                               # (old devices)
ra_validity_days = 365         # the RSA RA certificate made when the SCEP CA's key is not RSA
ra_renew_before_days = 30      # ... renewed this long before it expires

# Static challenge passwords by profile name, accepted any number of times (keep this file
# private). Without one, a profile's SCEP enrollments need a one-time challenge.
[scep.static_challenges]
# device = "a-long-shared-secret"
"""

SECTION = Section("scep", SCEPConfig, parse, EXAMPLE)
