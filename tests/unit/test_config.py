"""The configuration loader: every key documented, unknown keys and bad values named."""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from protocols.acme.config import SECTION as ACME_SECTION
from server.config import (
    Config,
    ExitConfig,
    ProfileConfig,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from server.errors import ConfigError
from server.frontend import installed

EXAMPLE = Path(__file__).parents[2] / "conf" / "certforge.example.toml"
SECTIONS = [f.section for f in installed() if f.section is not None]


def example_text() -> str:
    return EXAMPLE.read_text()


def test_the_example_file_holds_every_front_ends_table_as_it_prints_it() -> None:
    text = example_text()
    for section in SECTIONS:
        assert section.example in text, f"[{section.name}] differs from `certforge config example`"


def load_example() -> Config:
    return parse_config(tomllib.loads(example_text()))


def test_example_config_loads() -> None:
    config = load_example()
    assert config.server.https_listen.port == 8443
    assert config.profiles["tls-server"].extended_key_usage == ("1.3.6.1.5.5.7.3.1",)


def _differences(example: object, default: object, where: str) -> list[str]:
    """Where two configurations differ, walking dataclasses, mappings and tuples, so that a
    failure names the key rather than printing two whole Configs."""
    if dataclasses.is_dataclass(default) and type(example) is type(default):
        return [
            d
            for f in dataclasses.fields(default)
            for d in _differences(
                getattr(example, f.name), getattr(default, f.name), f"{where}.{f.name}"
            )
        ]
    if (
        isinstance(default, Mapping)
        and isinstance(example, Mapping)
        and example.keys() == default.keys()
    ):
        return [d for k in default for d in _differences(example[k], default[k], f"{where}.{k}")]
    if isinstance(default, tuple) and isinstance(example, tuple) and len(example) == len(default):
        return [
            d
            for i, (e, x) in enumerate(zip(example, default, strict=True))
            for d in _differences(e, x, f"{where}[{i}]")
        ]
    return [] if example == default else [f"{where}: example {example!r}, default {default!r}"]


def test_example_config_is_the_defaults() -> None:
    """Copied and edited, the example must behave as the embedded defaults do (it put the
    store in ./certforge-data whatever data_dir said, and turned on a log exit)."""
    example = load_example()
    assert _differences(replace(example, sections={}), Config(), "config") == []
    for section in SECTIONS:
        where = f"config.{section.name}"
        assert _differences(section.of(example), section.kind(), where) == []


def test_example_with_another_data_dir_keeps_everything_there(tmp_path: Path) -> None:
    text = example_text().replace(
        'data_dir = "certforge-data"', f'data_dir = "{tmp_path / "alt"}"', 1
    )
    config = parse_config(tomllib.loads(text))
    assert config.server.data_dir == tmp_path / "alt"
    assert config.store_url == f"sqlite:///{tmp_path / 'alt' / 'certforge.db'}"
    assert config.exits == ()


def _commented_tables(text: str) -> list[dict[str, Any]]:
    """The example's commented-out tables: a ``# [table]`` or ``# [[table]]`` line and the
    ``# key = value`` lines right after it, parsed as if uncommented."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("# ["):
            current = [line[2:]]
            blocks.append(current)
        elif current is not None and re.match(r'# [\w"-]+ *=', line):
            current.append(line[2:])
        else:
            current = None
    return [tomllib.loads("\n".join(b)) for b in blocks]


def _merge(into: dict[str, Any], more: Mapping[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(value, list) and isinstance(into.get(key), list):
            into[key] += value
        elif isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into.setdefault(key, value)


def _documented() -> dict[str, Any]:
    raw = tomllib.loads(example_text())
    for table in _commented_tables(example_text()):
        _merge(raw, table)
    return raw


# Fields that are not keys of their table: a profile's name is its table's name; an exit's
# options are the other keys of its [[exits]] table.
NOT_KEYS = {(ProfileConfig, "name"), (ExitConfig, "options"), (Config, "sections")}


def _undocumented(cls: type, tables: list[Mapping[str, Any]], where: str) -> list[str]:
    """The fields of dataclass ``cls`` (and of the dataclasses it holds, however deep) that
    none of ``tables`` has as a key. Walking the type hints, not a list of sections, catches
    every key a new section or field brings."""
    missing = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if (cls, f.name) in NOT_KEYS:
            continue
        values = [t[f.name] for t in tables if f.name in t]
        if not values:
            missing.append(f"{where} {f.name}")
            continue
        hint, args = hints[f.name], typing.get_args(hints[f.name])
        if dataclasses.is_dataclass(hint):  # a table (or a string, as HostPort is)
            inner, held = [v for v in values if isinstance(v, Mapping)], hint
            if not inner:
                continue
        elif args and dataclasses.is_dataclass(args[-1]):  # tables in a list or a table
            inner = [t for v in values for t in (v if isinstance(v, list) else v.values())]
            held = args[-1]
        else:
            continue
        missing += _undocumented(typing.cast(type, held), inner, f"{where}.{f.name}")
    return missing


def test_example_documents_every_key() -> None:
    documented = _documented()
    assert _undocumented(Config, [documented], "config") == []
    for section in SECTIONS:
        table = documented.get(section.name, {})
        assert _undocumented(section.kind, [table], f"config.{section.name}") == []


def test_example_commented_tables_parse() -> None:
    """What a user gets by uncommenting a table is valid too."""
    parse_config(_documented())


def test_contract_keys_exist() -> None:
    config = parse_config(
        tomllib.loads("""
[server]
data_dir = "d"
https_listen = "127.0.0.1:9443"
http_listen = "127.0.0.1:9080"
public_https_url = "https://ca.example:9443"
public_http_url = "http://ca.example:9080"
[store]
url = "mongodb://host:27017/certforge?replicaSet=rs0"
[acme]
http01_port = 5002
tlsalpn01_port = 5001
resolvers = ["127.0.0.1:8053"]
eab_required = true
""")
    )
    assert ACME_SECTION.of(config).eab_required
    assert config.store_url.startswith("mongodb://")
    assert str(config.server.http_listen) == "127.0.0.1:9080"


def test_default_store_follows_data_dir() -> None:
    config = load_config(None).with_data_dir(Path("/tmp/x"))
    assert config.store_url == "sqlite:////tmp/x/certforge.db"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param("bogus = 1", "bogus", id="unknown/top_level"),
        pytest.param("[server]\nfoo = 1", "[server]", id="unknown/server_key"),
        pytest.param('[server]\nhttps_listen = "nohost"', "https_listen", id="bad/listen"),
        pytest.param('[server]\npublic_http_url = "ftp://x"', "public_http_url", id="bad/url"),
        pytest.param('[acme]\nhttp01_port = "80"', "http01_port", id="bad/port_type"),
        pytest.param("[acme]\nhttp01_port = 70000", "http01_port", id="bad/port_range"),
        pytest.param('[acme]\nresolvers = ["1.1.1.1"]', "resolvers", id="bad/resolver"),
        pytest.param('[store]\nurl = "postgres://x"', "url", id="bad/store_url"),
        pytest.param('[ca]\nkey_type = "dsa"', "key_type", id="bad/ca_key_type"),
        pytest.param('[[ca.issuers]]\nname = "a"\nx = 1', "ca.issuers", id="unknown/issuer_key"),
        pytest.param('[profiles.p]\nissuer = "nope"', "issuer", id="bad/profile_issuer"),
        pytest.param('[profiles.p]\nkey_usage = ["x"]', "key_usage", id="bad/key_usage"),
        pytest.param('[profiles.p]\napproval = "maybe"', "approval", id="bad/approval"),
        pytest.param("[profiles.p.auth]\nsmtp = []", "smtp", id="unknown/auth_protocol"),
        pytest.param('[profiles.p]\nip_ranges = ["x"]', "ip_ranges", id="bad/ip_range"),
        pytest.param('[policy]\ndefault_profile = "nope"', "default_profile", id="bad/default"),
        pytest.param('[[exits]]\nurl = "x"', "exits", id="bad/exit_without_type"),
        pytest.param("[crl]\ninterval_minutes = 0", "interval_minutes", id="bad/crl_interval"),
        pytest.param(
            "[crl]\ninterval_minutes = 120\nnext_update_hours = 1",
            "next_update_hours",
            id="bad/crl_next_update_before_next_crl",
        ),
        pytest.param("[crl]\ndelta = 1", "[crl]", id="unknown/crl_key"),
        pytest.param("[crl]\nshards = 0", "shards", id="bad/crl_shards_zero"),
        pytest.param(
            "[crl]\ndelta_interval_minutes = 60", "delta_interval", id="bad/delta_not_shorter"
        ),
        pytest.param(
            "[crl]\ndelta_interval_minutes = 5\nshards = 2", "delta_interval", id="bad/delta_shards"
        ),
        pytest.param("[crl]\nshards = 5000", "shards", id="bad/crl_shards_too_many"),
        pytest.param('[ocsp]\ndisabled_issuers = ["nope"]', "disabled_issuers", id="bad/ocsp_ca"),
        pytest.param('[ocsp]\nenabled = "yes"', "enabled", id="bad/ocsp_enabled_type"),
        pytest.param(
            "[ocsp]\nsigner_validity_days = 5\nsigner_renew_before_days = 5",
            "signer_renew_before_days",
            id="bad/ocsp_signer_renewal",
        ),
        pytest.param("[ocsp]\nrecheck_seconds = -1", "recheck_seconds", id="bad/ocsp_recheck"),
        pytest.param("[scep]\nchallenge_lifetime_seconds = 0", "challenge_lifetime", id="bad/life"),
        pytest.param("[scep]\nlegacy_algorithms = 1", "legacy_algorithms", id="bad/scep_legacy"),
        pytest.param(
            '[scep.static_challenges]\nnope = "long-enough"', "nope", id="bad/static_profile"
        ),
        pytest.param('[scep.static_challenges]\ndevice = "short"', "device", id="bad/static_pw"),
        pytest.param("[scep]\nra_renew_before_days = 400", "ra_renew", id="bad/ra_renew"),
        pytest.param(
            '[monitor]\nexpiry_thresholds = ["7 days"]', "expiry_thresholds", id="bad/threshold"
        ),
        pytest.param('[monitor]\nexpiry_thresholds = ["0s"]', "expiry", id="bad/threshold_zero"),
        pytest.param("[monitor]\nca_expiry_thresholds = [-1]", "ca_expiry", id="bad/ca_threshold"),
        pytest.param("[monitor]\nscan_interval_seconds = 0", "scan_interval", id="bad/scan"),
        pytest.param("[monitor]\nlease = 1", "[monitor]", id="unknown/monitor_key"),
    ],
)
def test_bad_config_names_the_key(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace(".", r"\.")):
        parse_config(tomllib.loads(text))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        pytest.param('[[ca.issuers]]\nname = "../x"', "name", id="bad/issuer_name_path"),
        pytest.param('[[ca.issuers]]\nname = "root"', "name", id="bad/issuer_name_root"),
        pytest.param(
            '[ca]\npassphrase_env = "A"\npassphrase_file = "f"',
            "passphrase_env",
            id="bad/two_passphrase_sources",
        ),
    ],
)
def test_bad_ca_config(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse_config(tomllib.loads(text))


def test_monitor_thresholds_are_durations_or_days_largest_first() -> None:
    config = parse_config(tomllib.loads('[monitor]\nexpiry_thresholds = ["90s", 2, "1d12h", "2d"]'))
    assert config.monitor.expiry_thresholds == (
        timedelta(days=2),
        timedelta(days=1, hours=12),
        timedelta(seconds=90),
    )
    assert [format_duration(t) for t in config.monitor.expiry_thresholds] == [
        "2d",
        "1d12h",
        "1m30s",
    ]
    assert parse_duration(" 15m ") == timedelta(minutes=15)
