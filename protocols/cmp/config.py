"""CMP's table, ``[cmp]``: the profile of ``/.well-known/cmp``, trust anchors for signed
requests, the messageTime window, implicitConfirm, secrets and the signer's lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.config import Config, Section, Table
from server.errors import ConfigError


@dataclass(frozen=True, slots=True)
class CMPConfig:
    default_profile: str = "device"  # the profile /.well-known/cmp enrolls into
    # PEM files of external CAs (a manufacturer's) whose certificates may sign ir and cr
    # besides this CA's; a relative path is in the data directory.
    trust_anchors: tuple[Path, ...] = ()
    max_clock_skew_seconds: int = 300  # messageTime, either way
    implicit_confirm: bool = True  # grant implicitConfirm when a client asks for it
    secret_lifetime_seconds: int = 3600  # one-time secrets (`certforge cmp secret`)
    check_after_seconds: int = 5  # pollRep's checkAfter while a request is pending
    signer_validity_days: int = 365  # the certificate that signs CMP answers
    signer_renew_before_days: int = 30  # ... renewed at a start this long before it expires


def parse(t: Table, core: Config) -> CMPConfig:
    d = CMPConfig()
    cfg = CMPConfig(
        default_profile=t.get("default_profile", str, d.default_profile),
        trust_anchors=tuple(Path(p) for p in t.strings("trust_anchors", ())),
        max_clock_skew_seconds=t.positive("max_clock_skew_seconds", d.max_clock_skew_seconds),
        implicit_confirm=t.get("implicit_confirm", bool, d.implicit_confirm),
        secret_lifetime_seconds=t.positive("secret_lifetime_seconds", d.secret_lifetime_seconds),
        check_after_seconds=t.positive("check_after_seconds", d.check_after_seconds),
        signer_validity_days=t.positive("signer_validity_days", d.signer_validity_days),
        signer_renew_before_days=t.positive("signer_renew_before_days", d.signer_renew_before_days),
    )
    t.done()
    if cfg.default_profile not in core.profiles:
        raise ConfigError(f"{t.name('default_profile')}: no profile named {cfg.default_profile!r}")
    if cfg.secret_lifetime_seconds > 365 * 86400:
        raise ConfigError(f"{t.name('secret_lifetime_seconds')}: at most 365 days")
    if cfg.signer_renew_before_days >= cfg.signer_validity_days:
        raise ConfigError(
            f"{t.name('signer_renew_before_days')}: must be less than signer_validity_days"
        )
    return cfg


EXAMPLE = """\
[cmp]
# CMP (RFC 9483) at http://HOST:8080/.well-known/cmp and /.well-known/cmp/p/<profile>.
default_profile = "device"     # the profile /.well-known/cmp enrolls into
trust_anchors = []             # PEM files of external CAs whose certificates may sign ir/cr
max_clock_skew_seconds = 300   # a request's messageTime may be this far off, either way
implicit_confirm = true        # grant implicitConfirm when the client asks for it
secret_lifetime_seconds = 3600 # one-time secrets (`certforge cmp secret`)
check_after_seconds = 5        # pollRep's checkAfter while a request waits for approval
signer_validity_days = 365     # the EC certificate that signs CMP answers (data_dir/cmp/)
signer_renew_before_days = 30  # ... renewed at a start this long before it expires
"""

SECTION = Section("cmp", CMPConfig, parse, EXAMPLE)
