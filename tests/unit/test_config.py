"""The configuration loader: every key documented, unknown keys and bad values named."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from server.config import (
    ACMEConfig,
    CAConfig,
    CRLConfig,
    ESTConfig,
    IssuerConfig,
    MonitorConfig,
    OCSPConfig,
    PolicyConfig,
    ProfileConfig,
    SCEPConfig,
    ServerConfig,
    StoreConfig,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)
from server.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "conf" / "certforge.example.toml"


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.server.https_listen.port == 8443
    assert config.exits[0].name == "audit-log"
    assert config.profiles["tls-server"].extended_key_usage == ("1.3.6.1.5.5.7.3.1",)


@pytest.mark.parametrize(
    ("section", "cls"),
    [
        ("server", ServerConfig),
        ("store", StoreConfig),
        ("ca", CAConfig),
        ("acme", ACMEConfig),
        ("est", ESTConfig),
        ("crl", CRLConfig),
        ("ocsp", OCSPConfig),
        ("scep", SCEPConfig),
        ("monitor", MonitorConfig),
        ("policy", PolicyConfig),
    ],
)
def test_example_documents_every_key(section: str, cls: type) -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    assert {f.name for f in dataclasses.fields(cls)} == set(raw[section])


def test_example_documents_every_issuer_and_profile_key() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    assert {f.name for f in dataclasses.fields(IssuerConfig)} == set(raw["ca"]["issuers"][0])
    profile_keys = {f.name for f in dataclasses.fields(ProfileConfig)} - {"name"}
    assert profile_keys == set(raw["profiles"]["tls-server"])


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
    assert config.acme.eab_required
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
