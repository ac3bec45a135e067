"""The configuration: TOML in, frozen and validated dataclasses out.

Unknown keys and bad values raise ``ConfigError`` naming the key (``[server] https_listen``),
and ``certforge serve`` stops with that message. The core sections are read here; each
front end owns its table (a ``Section``: dataclass, parser, example text) and the methods of
its protocol in ``[profiles.NAME.auth]`` (``ProtocolAuth``), given by its entry point
(``server.frontend``). ``conf/certforge.example.toml`` sets every core key to its default
(tables that are off by default commented out), and ``certforge config example`` prints the
installed front ends' tables; tests/unit/test_config.py checks that both parse to
``Config()`` and name every field of every dataclass they configure.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from server.errors import ConfigError
from server.model import AuthMethod

T = TypeVar("T")
S = TypeVar("S")

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
CSR_KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "rsa", "ed25519")
KEY_USAGES = (
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
)
EKU_NAMES = {
    "serverAuth": "1.3.6.1.5.5.7.3.1",
    "clientAuth": "1.3.6.1.5.5.7.3.2",
    "codeSigning": "1.3.6.1.5.5.7.3.3",
    "emailProtection": "1.3.6.1.5.5.7.3.4",
    "timeStamping": "1.3.6.1.5.5.7.3.8",
    "OCSPSigning": "1.3.6.1.5.5.7.3.9",
    "ipsecIKE": "1.3.6.1.5.5.7.3.17",
}
SAN_TYPES = ("dns", "ip", "email", "uri")
SUBJECT_ATTRIBUTES = {
    "CN": "2.5.4.3",
    "O": "2.5.4.10",
    "OU": "2.5.4.11",
    "C": "2.5.4.6",
    "ST": "2.5.4.8",
    "L": "2.5.4.7",
    "serialNumber": "2.5.4.5",
    "emailAddress": "1.2.840.113549.1.9.1",
    "DC": "0.9.2342.19200300.100.1.25",
    "UID": "0.9.2342.19200300.100.1.1",
}


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    data_dir: Path = Path("certforge-data")
    https_listen: HostPort = HostPort("127.0.0.1", 8443)
    http_listen: HostPort = HostPort("127.0.0.1", 8080)
    public_https_url: str = "https://127.0.0.1:8443"
    public_http_url: str = "http://127.0.0.1:8080"
    max_body_bytes: int = 65536
    tls_cert_days: int = 30
    tls_renew_before_days: int = 10
    shutdown_timeout: float = 10.0
    workers: int = 1
    worker_start_timeout: float = 30.0
    log_level: str = "info"
    log_format: str = "json"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    url: str = ""  # empty: sqlite inside the data directory


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    name: str = "default"
    key_type: str = ""  # empty: [ca] key_type
    validity_days: int = 3650
    import_cert: str = ""  # PEM certificate to import instead of creating a CA
    import_key: str = ""  # its PEM private key
    import_pkcs12: str = ""  # or one PKCS#12 file with both
    import_password_env: str = ""  # environment variable holding the import password


@dataclass(frozen=True, slots=True)
class CAConfig:
    name: str = "certforge"  # used in the CAs' subject names
    key_type: str = "ec-p256"
    root_validity_days: int = 7300
    passphrase_env: str = ""  # encrypt CA keys at rest with this variable's value
    passphrase_file: str = ""  # ... or with this file's first line
    issuers: tuple[IssuerConfig, ...] = (IssuerConfig(),)


MAX_CRL_SHARDS = 1024


@dataclass(frozen=True, slots=True)
class CRLConfig:
    interval_minutes: int = 60  # every issuing CA's CRL is re-issued this often
    next_update_hours: int = 24  # nextUpdate is this long after thisUpdate
    shards: int = 1  # > 1: also this many partitioned CRLs per CA, each certificate in one
    delta_interval_minutes: int = 0  # > 0: a delta CRL this often between full CRLs


@dataclass(frozen=True, slots=True)
class OCSPConfig:
    enabled: bool = True  # the responder at /ocsp and the OCSP URL in certificates
    disabled_issuers: tuple[str, ...] = ()  # issuing CAs without OCSP (CRL only)
    validity_hours: int = 24  # nextUpdate - thisUpdate of each response
    signer_validity_days: int = 30  # the delegated OCSP signing certificate's lifetime
    signer_renew_before_days: int = 10  # ... replaced this long before it expires
    recheck_seconds: float = 1.0  # a cached status is re-read from the store after this

    def serves(self, issuer: str) -> bool:
        return self.enabled and issuer not in self.disabled_issuers


DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90s``, ``1d12h``: a whole number of seconds, above zero."""
    found = _DURATION.fullmatch(text.strip())
    if found is None or not any(found.groups()):
        raise ValueError(f"{text!r} is not a duration such as 30d, 12h, 15m or 90s")
    units = DURATION_UNITS.values()
    seconds = sum(int(n or 0) * unit for n, unit in zip(found.groups(), units, strict=True))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a duration above zero")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any duration") from None


def format_duration(value: timedelta) -> str:
    """The shortest text ``parse_duration`` reads back as ``value`` (``7d``, ``1d12h``)."""
    rest, parts = int(value.total_seconds()), []
    for unit, size in DURATION_UNITS.items():
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """Expiry warnings (``expiring`` events) and the store's gauges (``server/monitor``)."""

    enabled: bool = True
    # An ``expiring`` event per certificate as each is crossed, nearest last.
    expiry_thresholds: tuple[timedelta, ...] = (
        timedelta(days=30),
        timedelta(days=7),
        timedelta(days=1),
    )
    # The same for the root and issuing CA certificates, which need earlier warning.
    ca_expiry_thresholds: tuple[timedelta, ...] = (
        timedelta(days=90),
        timedelta(days=30),
        timedelta(days=7),
    )
    # How often the scan runs and the gauges are recounted from the store.
    scan_interval_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    name: str
    issuer: str = "default"
    validity_days: int = 90
    key_usage: tuple[str, ...] = ("digitalSignature",)
    extended_key_usage: tuple[str, ...] = ("1.3.6.1.5.5.7.3.1",)  # dotted OIDs
    certificate_policies: tuple[str, ...] = ()
    key_types: tuple[str, ...] = ("ec-p256", "ec-p384", "rsa")
    rsa_min_bits: int = 2048
    subject_attributes: tuple[str, ...] = ("CN",)  # kept from the CSR; others are dropped
    cn_in_sans: bool = True  # the CN must be one of the SANs (added when there are none)
    require_san: bool = True
    san_types: tuple[str, ...] = ("dns", "ip")
    max_sans: int = 100
    dns_suffixes: tuple[str, ...] = ()  # empty: any name
    ip_ranges: tuple[str, ...] = ()  # empty: any address
    approval: str = "auto"  # "auto" or "manual"
    auto_approve: tuple[str, ...] = (
        "token",
        "client_cert",
        "challenge_password",
        "acme_account",
        "est_basic",
    )
    auth: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # protocol -> methods
    # EST (RFC 7030 §3.5): the CSR's challengePassword must carry the connection's tls-unique.
    est_pop_linking: bool = False


def _profile_defaults() -> dict[str, ProfileConfig]:
    """The built-in profiles, before any front end adds the methods its protocol accepts."""
    return {
        "tls-server": ProfileConfig(
            name="tls-server",
            validity_days=90,
            key_usage=("digitalSignature", "keyEncipherment"),
            extended_key_usage=(EKU_NAMES["serverAuth"],),
            certificate_policies=("2.23.140.1.2.1",),
        ),
        "tls-client": ProfileConfig(
            name="tls-client",
            validity_days=365,
            key_usage=("digitalSignature",),
            extended_key_usage=(EKU_NAMES["clientAuth"],),
            key_types=("ec-p256", "ec-p384", "rsa", "ed25519"),
            subject_attributes=("CN", "O", "OU", "emailAddress", "UID"),
            cn_in_sans=False,
            require_san=False,
            san_types=("dns", "email", "uri"),
        ),
        "device": ProfileConfig(
            name="device",
            validity_days=730,
            key_usage=("digitalSignature", "keyEncipherment"),
            extended_key_usage=(EKU_NAMES["clientAuth"], EKU_NAMES["serverAuth"]),
            key_types=("ec-p256", "ec-p384", "rsa", "ed25519"),
            subject_attributes=("CN", "O", "OU", "serialNumber"),
            cn_in_sans=False,
            require_san=False,
            san_types=("dns", "ip", "uri"),
        ),
    }


@dataclass(frozen=True, slots=True)
class ProtocolAuth:
    """What a front end adds to ``[profiles.NAME.auth]``: its protocol's key, the methods a
    profile accepts there unless it says otherwise, and the method names it brings besides
    ``AuthMethod``'s (which a profile may then name in its ``auth`` and ``auto_approve``)."""

    protocol: str
    default: tuple[str, ...]
    methods: tuple[str, ...] = ()


class Section(Generic[S]):
    """A front end's own table of the configuration file, ``[name]``.

    ``parse`` reads the table (``Table`` names a bad or unknown key) once the core sections
    are read, and gets them (``core``: profiles, issuers, the server's) for its
    cross-checks; ``example`` is the table as ``certforge config example`` prints it, every
    key at its default; ``kind()`` is the defaults, what ``of`` answers for a configuration
    without the table (``Config()``)."""

    def __init__(
        self,
        name: str,
        kind: type[S],
        parse: Callable[[Table, Config], S],
        example: str,
    ) -> None:
        self.name, self.kind, self.parse, self.example = name, kind, parse, example

    def of(self, config: Config) -> S:
        """The section's typed value in ``config``, for the front end that owns it."""
        value = config.sections.get(self.name)
        return value if isinstance(value, self.kind) else self.kind()


@runtime_checkable
class ConfigOwner(Protocol):
    """What the configuration needs of a front end (``server.frontend.FrontEnd`` is one)."""

    @property
    def section(self) -> Section[Any] | None: ...

    @property
    def auth(self) -> ProtocolAuth | None: ...


FRONTEND_GROUP = "certforge.frontends"


@functools.cache
def installed_frontends() -> tuple[object, ...]:
    """The objects of the front ends' entry-point group, by name, loaded once per process
    (``server.frontend.installed`` checks that each is a ``FrontEnd``). Loaded here so that
    the configuration, which the policies read, imports no front-end machinery."""
    found: list[object] = []
    for ep in sorted(entry_points(group=FRONTEND_GROUP), key=lambda e: e.name):
        try:
            found.append(ep.load())
        except Exception as exc:
            raise ConfigError(f"front end {ep.name!r} failed to load: {exc}") from exc
    return tuple(found)


def _installed() -> Sequence[ConfigOwner]:
    return [o for o in installed_frontends() if isinstance(o, ConfigOwner)]


def default_profiles(owners: Sequence[ConfigOwner] | None = None) -> dict[str, ProfileConfig]:
    """The built-in profiles, each accepting every front end's default methods."""
    auth = _default_auth(_installed() if owners is None else owners)
    return {name: replace(p, auth=dict(auth)) for name, p in _profile_defaults().items()}


def _default_auth(owners: Sequence[ConfigOwner]) -> dict[str, tuple[str, ...]]:
    return {o.auth.protocol: o.auth.default for o in owners if o.auth is not None}


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    default_profile: str = "tls-server"
    modules: tuple[str, ...] = ("profiles",)  # entry points in certforge.policies, in order
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExitConfig:
    name: str
    type: str  # entry point in certforge.exits
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    ca: CAConfig = field(default_factory=CAConfig)
    crl: CRLConfig = field(default_factory=CRLConfig)
    ocsp: OCSPConfig = field(default_factory=OCSPConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    profiles: Mapping[str, ProfileConfig] = field(default_factory=default_profiles)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    exits: tuple[ExitConfig, ...] = ()
    # The front ends' own tables by name, each read by its ``Section`` (``Section.of``).
    sections: Mapping[str, object] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.server.data_dir / 'certforge.db'}"

    def with_data_dir(self, data_dir: Path) -> Config:
        return replace(self, server=replace(self.server, data_dir=data_dir))


class Table:
    """One TOML table being read: hands out typed values and remembers which keys it used."""

    def __init__(self, raw: Mapping[str, Any], where: str) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a table")
        self.raw, self.where, self.used = raw, where, set[str]()

    def name(self, key: str) -> str:
        return f"{self.where} {key}"

    def get(self, key: str, kind: type[T], default: T) -> T:
        self.used.add(key)
        if key not in self.raw:
            return default
        value = self.raw[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{self.name(key)}: expected {kind.__name__}, got {value!r}")
        return value

    def strings(
        self, key: str, default: tuple[str, ...], choices: tuple[str, ...] | None = None
    ) -> tuple[str, ...]:
        values = self.get(key, list, list(default))
        for v in values:
            if not isinstance(v, str):
                raise ConfigError(f"{self.name(key)}: expected a list of strings, got {v!r}")
            if choices is not None and v not in choices:
                raise ConfigError(f"{self.name(key)}: {v!r} is not one of {', '.join(choices)}")
        return tuple(values)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise ConfigError(f"{self.name(key)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def positive(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if value <= 0:
            raise ConfigError(f"{self.name(key)}: must be positive, got {value}")
        return value

    def port(self, key: str, default: int) -> int:
        value = self.get(key, int, default)
        if not 0 < value < 65536:
            raise ConfigError(f"{self.name(key)}: {value} is not a TCP port")
        return value

    def table(self, key: str) -> Table:
        inner = self.where.strip("[]")
        return Table(
            self.get(key, dict, {}), f"[{inner}.{key}]" if inner != "config" else f"[{key}]"
        )

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key {unknown[0]!r}")


def parse_host_port(text: str, where: str) -> HostPort:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {text!r} is not host:port")
    return HostPort(host.strip("[]"), int(port))


def _url(t: Table, key: str, default: str, scheme: str) -> str:
    value = t.get(key, str, default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme != scheme or not parts.netloc:
        raise ConfigError(f"{t.name(key)}: {value!r} is not an {scheme}:// URL")
    return value


def _server(t: Table) -> ServerConfig:
    d = ServerConfig()
    cfg = ServerConfig(
        data_dir=Path(t.get("data_dir", str, str(d.data_dir))),
        https_listen=parse_host_port(
            t.get("https_listen", str, str(d.https_listen)), t.name("https_listen")
        ),
        http_listen=parse_host_port(
            t.get("http_listen", str, str(d.http_listen)), t.name("http_listen")
        ),
        public_https_url=_url(t, "public_https_url", d.public_https_url, "https"),
        public_http_url=_url(t, "public_http_url", d.public_http_url, "http"),
        max_body_bytes=t.positive("max_body_bytes", d.max_body_bytes),
        tls_cert_days=t.positive("tls_cert_days", d.tls_cert_days),
        tls_renew_before_days=t.positive("tls_renew_before_days", d.tls_renew_before_days),
        shutdown_timeout=t.get("shutdown_timeout", float, d.shutdown_timeout),
        workers=t.positive("workers", d.workers),
        worker_start_timeout=t.get("worker_start_timeout", float, d.worker_start_timeout),
        log_level=t.choice("log_level", d.log_level, ("debug", "info", "warning", "error")),
        log_format=t.choice("log_format", d.log_format, ("json", "text")),
    )
    t.done()
    if cfg.worker_start_timeout <= 0:
        raise ConfigError(f"{t.name('worker_start_timeout')}: must be positive")
    if cfg.tls_renew_before_days >= cfg.tls_cert_days:
        raise ConfigError(f"{t.name('tls_renew_before_days')}: must be less than tls_cert_days")
    return cfg


def _store(t: Table) -> StoreConfig:
    url = t.get("url", str, "")
    if url and not url.startswith(("sqlite:///", "mongodb://", "mongodb+srv://")):
        raise ConfigError(f"{t.name('url')}: {url!r} is neither sqlite:///PATH nor mongodb://")
    t.done()
    return StoreConfig(url=url)


def _issuer(t: Table, default_key: str) -> IssuerConfig:
    d = IssuerConfig()
    name = t.get("name", str, d.name)
    # The name becomes a file name (ca/<name>.pem) and a URL path (/crl/<name>.crl).
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", name) or name == "root":
        raise ConfigError(
            f"{t.name('name')}: {name!r} must be letters, digits, - and _ (and not 'root')"
        )
    # Kept as written, empty meaning [ca] key_type (server/ca/issuers.py resolves it), so
    # that a file stating the defaults parses to Config() itself.
    key_type = t.get("key_type", str, d.key_type)
    if (key_type or default_key) not in KEY_TYPES:
        raise ConfigError(
            f"{t.name('key_type')}: {key_type!r} is not one of {', '.join(KEY_TYPES)}"
        )
    cfg = IssuerConfig(
        name=name,
        key_type=key_type,
        validity_days=t.positive("validity_days", d.validity_days),
        import_cert=t.get("import_cert", str, ""),
        import_key=t.get("import_key", str, ""),
        import_pkcs12=t.get("import_pkcs12", str, ""),
        import_password_env=t.get("import_password_env", str, ""),
    )
    if bool(cfg.import_cert) != bool(cfg.import_key):
        raise ConfigError(f"{t.name('import_cert')}: import_cert and import_key go together")
    if cfg.import_pkcs12 and cfg.import_cert:
        raise ConfigError(f"{t.name('import_pkcs12')}: give import_pkcs12 or import_cert, not both")
    t.done()
    return cfg


def _ca(t: Table) -> CAConfig:
    d = CAConfig()
    key_type = t.choice("key_type", d.key_type, KEY_TYPES)
    raw_issuers = t.get("issuers", list, [{}])
    issuers = tuple(
        _issuer(Table(raw, f"[[ca.issuers]] #{i + 1}"), key_type)
        for i, raw in enumerate(raw_issuers)
    )
    names = [i.name for i in issuers]
    if not issuers or len(set(names)) != len(names):
        raise ConfigError("[ca] issuers: names must be present and unique")
    cfg = CAConfig(
        name=t.get("name", str, d.name),
        key_type=key_type,
        root_validity_days=t.positive("root_validity_days", d.root_validity_days),
        passphrase_env=t.get("passphrase_env", str, ""),
        passphrase_file=t.get("passphrase_file", str, ""),
        issuers=issuers,
    )
    t.done()
    if cfg.passphrase_env and cfg.passphrase_file:
        raise ConfigError("[ca] passphrase_env: give passphrase_env or passphrase_file, not both")
    return cfg


def _crl(t: Table) -> CRLConfig:
    d = CRLConfig()
    cfg = CRLConfig(
        interval_minutes=t.positive("interval_minutes", d.interval_minutes),
        next_update_hours=t.positive("next_update_hours", d.next_update_hours),
        shards=t.positive("shards", d.shards),
        delta_interval_minutes=t.get("delta_interval_minutes", int, d.delta_interval_minutes),
    )
    t.done()
    if not 0 <= cfg.delta_interval_minutes < cfg.interval_minutes:
        raise ConfigError(
            f"{t.name('delta_interval_minutes')}: 0 (no delta CRLs) or less than interval_minutes"
        )
    if cfg.delta_interval_minutes and cfg.shards > 1:
        # A delta CRL has its base's scope; certificates naming a partition are out of it.
        raise ConfigError(f"{t.name('delta_interval_minutes')}: delta CRLs need shards = 1")
    if cfg.shards > MAX_CRL_SHARDS:
        raise ConfigError(f"{t.name('shards')}: at most {MAX_CRL_SHARDS}")
    # A relying party must get the next CRL before its copy's nextUpdate passes.
    if cfg.next_update_hours * 60 <= cfg.interval_minutes:
        raise ConfigError(f"{t.name('next_update_hours')}: must be longer than interval_minutes")
    return cfg


def _thresholds(t: Table, key: str, default: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
    """Durations (``"30d"``, ``"90s"``) or whole days (``30``), kept largest first."""
    values = t.get(key, list, [format_duration(d) for d in default])
    found: set[timedelta] = set()
    for v in values:
        try:
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                found.add(timedelta(days=v))
            elif isinstance(v, str):
                found.add(parse_duration(v))
            else:
                raise ValueError(f"{v!r} is not a duration such as 30d or a number of days")
        except ValueError as exc:
            raise ConfigError(f"{t.name(key)}: {exc}") from None
    return tuple(sorted(found, reverse=True))


def _monitor(t: Table) -> MonitorConfig:
    d = MonitorConfig()
    cfg = MonitorConfig(
        enabled=t.get("enabled", bool, d.enabled),
        expiry_thresholds=_thresholds(t, "expiry_thresholds", d.expiry_thresholds),
        ca_expiry_thresholds=_thresholds(t, "ca_expiry_thresholds", d.ca_expiry_thresholds),
        scan_interval_seconds=t.get("scan_interval_seconds", float, d.scan_interval_seconds),
    )
    t.done()
    if cfg.scan_interval_seconds <= 0:
        raise ConfigError(f"{t.name('scan_interval_seconds')}: must be positive")
    return cfg


def _ocsp(t: Table, issuers: set[str]) -> OCSPConfig:
    d = OCSPConfig()
    cfg = OCSPConfig(
        enabled=t.get("enabled", bool, d.enabled),
        disabled_issuers=t.strings("disabled_issuers", d.disabled_issuers),
        validity_hours=t.positive("validity_hours", d.validity_hours),
        signer_validity_days=t.positive("signer_validity_days", d.signer_validity_days),
        signer_renew_before_days=t.positive("signer_renew_before_days", d.signer_renew_before_days),
        recheck_seconds=t.get("recheck_seconds", float, d.recheck_seconds),
    )
    t.done()
    for name in cfg.disabled_issuers:
        if name not in issuers:
            raise ConfigError(f"{t.name('disabled_issuers')}: no issuing CA named {name!r}")
    if cfg.signer_renew_before_days >= cfg.signer_validity_days:
        raise ConfigError(
            f"{t.name('signer_renew_before_days')}: must be less than signer_validity_days"
        )
    if cfg.recheck_seconds < 0:
        raise ConfigError(f"{t.name('recheck_seconds')}: must not be negative")
    return cfg


def _profile(
    name: str, t: Table, issuers: set[str], owners: Sequence[ConfigOwner]
) -> ProfileConfig:
    defaults = _default_auth(owners)
    base = default_profiles(owners).get(name, ProfileConfig(name=name, auth=defaults))
    methods = (
        *(str(m) for m in AuthMethod),
        *(m for o in owners if o.auth is not None for m in o.auth.methods),
    )
    auth_t = t.table("auth")
    auth = {
        p: auth_t.strings(p, base.auth.get(p, ()), methods)
        for p in defaults
        if p in auth_t.raw or p in base.auth
    }
    auth_t.done()
    cfg = ProfileConfig(
        name=name,
        issuer=t.get("issuer", str, base.issuer),
        validity_days=t.positive("validity_days", base.validity_days),
        key_usage=t.strings("key_usage", base.key_usage, KEY_USAGES),
        extended_key_usage=tuple(
            EKU_NAMES.get(e, e) for e in t.strings("extended_key_usage", base.extended_key_usage)
        ),
        certificate_policies=t.strings("certificate_policies", base.certificate_policies),
        key_types=t.strings("key_types", base.key_types, CSR_KEY_TYPES),
        rsa_min_bits=t.positive("rsa_min_bits", base.rsa_min_bits),
        subject_attributes=t.strings(
            "subject_attributes", base.subject_attributes, tuple(SUBJECT_ATTRIBUTES)
        ),
        cn_in_sans=t.get("cn_in_sans", bool, base.cn_in_sans),
        require_san=t.get("require_san", bool, base.require_san),
        san_types=t.strings("san_types", base.san_types, SAN_TYPES),
        max_sans=t.positive("max_sans", base.max_sans),
        dns_suffixes=tuple(
            s.lower().strip(".") for s in t.strings("dns_suffixes", base.dns_suffixes)
        ),
        ip_ranges=t.strings("ip_ranges", base.ip_ranges),
        approval=t.choice("approval", base.approval, ("auto", "manual")),
        auto_approve=t.strings("auto_approve", base.auto_approve, methods),
        auth=auth,
        est_pop_linking=t.get("est_pop_linking", bool, base.est_pop_linking),
    )
    for r in cfg.ip_ranges:
        try:
            ipaddress.ip_network(r, strict=False)
        except ValueError:
            raise ConfigError(f"{t.name('ip_ranges')}: {r!r} is not an address range") from None
    for oid in (*cfg.extended_key_usage, *cfg.certificate_policies):
        if not all(p.isdigit() for p in oid.split(".")):
            raise ConfigError(f"{t.where}: {oid!r} is not a known name or a dotted OID")
    if cfg.issuer not in issuers:
        raise ConfigError(f"{t.name('issuer')}: no issuing CA named {cfg.issuer!r}")
    t.done()
    return cfg


def _policy(t: Table, profiles: Mapping[str, ProfileConfig]) -> PolicyConfig:
    d = PolicyConfig()
    default_profile = t.get("default_profile", str, d.default_profile)
    if default_profile not in profiles:
        raise ConfigError(f"{t.name('default_profile')}: no profile named {default_profile!r}")
    options = t.get("options", dict, {})
    cfg = PolicyConfig(
        default_profile=default_profile, modules=t.strings("modules", d.modules), options=options
    )
    t.done()
    return cfg


def _exits(raw: list[Any]) -> tuple[ExitConfig, ...]:
    exits = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise ConfigError(f'[[exits]] #{i + 1}: needs type = "webhook", "files", ...')
        options = {k: v for k, v in item.items() if k not in ("type", "name")}
        exits.append(
            ExitConfig(name=str(item.get("name", item["type"])), type=item["type"], options=options)
        )
    if len({e.name for e in exits}) != len(exits):
        raise ConfigError("[[exits]]: names must be unique (set name = ...)")
    return tuple(exits)


def parse_config(raw: Mapping[str, Any], owners: Sequence[ConfigOwner] | None = None) -> Config:
    """The core sections, then each front end's (``owners``; None: the installed ones)."""
    owners = _installed() if owners is None else owners
    top = Table(raw, "config")
    server = _server(top.table("server"))
    store = _store(top.table("store"))
    ca = _ca(top.table("ca"))
    issuers = {i.name for i in ca.issuers}
    crl = _crl(top.table("crl"))
    ocsp = _ocsp(top.table("ocsp"), issuers)
    profiles = default_profiles(owners)
    prof_t = top.table("profiles")
    for name in prof_t.raw:
        profiles[name] = _profile(name, prof_t.table(name), issuers, owners)
    for p in profiles.values():
        if p.issuer not in issuers:
            raise ConfigError(f"[profiles.{p.name}] issuer: no issuing CA named {p.issuer!r}")
    policy = _policy(top.table("policy"), profiles)
    monitor = _monitor(top.table("monitor"))
    exits = _exits(top.get("exits", list, []))
    core = Config(
        server=server,
        store=store,
        ca=ca,
        crl=crl,
        ocsp=ocsp,
        monitor=monitor,
        profiles=profiles,
        policy=policy,
        exits=exits,
    )
    sections: dict[str, object] = {}
    for owner in owners:
        if (section := owner.section) is not None:
            sections[section.name] = section.parse(top.table(section.name), core)
    top.done()
    return replace(core, sections=sections)


def load_config(path: Path | None, owners: Sequence[ConfigOwner] | None = None) -> Config:
    """Read and validate; raises ``ConfigError`` naming the key."""
    if path is None:
        return Config(profiles=default_profiles(owners))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(raw, owners)
