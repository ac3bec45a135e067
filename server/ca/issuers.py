"""The CA hierarchy: one root and the issuing CAs configured under ``[[ca.issuers]]``.

Files in the data directory (``[server] data_dir``):

``root.pem``
    The root CA certificate: the trust anchor clients install. Always present once started.
``ca/root.key.pem``
    The root's key, when certforge created the root (absent when the root came with an import).
``ca/<issuer>.pem``
    The issuing CA's certificate, followed by any intermediates up to (not including) the root.
``ca/<issuer>.key.pem``
    The issuing CA's key.

The first start creates a root and one issuing CA per configured issuer; an issuer added to the
configuration later is created on the next start, signed by the existing root. An issuer with
``import_cert``/``import_key`` or ``import_pkcs12`` is imported instead (``server.ca.imports``);
when no root exists yet, the self-signed top of the imported chain becomes ``root.pem``. Every
later start loads what exists, and checks that each issuer still chains to ``root.pem``.

What the created CA certificates contain is ``server.ca.cacerts``; keys at rest are
``server.ca.keystore``. Deliberately not done: CA rollover and cross-signing; an expired
issuing CA is reported in the log, and must be replaced by hand.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID

from server.ca.cacerts import (
    ROOT,
    ca_issuers_url,
    crl_url,
    delta_crl_url,
    issuing_certificate,
    root_certificate,
    ski_of,
)
from server.ca.imports import check_key_matches, is_issued_by, is_self_signed, read_import
from server.ca.keystore import (
    CAKey,
    SigningHash,
    generate_key,
    load_passphrase,
    read_key,
    signing_hash,
    write_key,
)
from server.config import CAConfig, Config, IssuerConfig
from server.durable import write_atomic
from server.errors import ConfigError, Internal

__all__ = [
    "CAHierarchy",
    "IssuingCA",
    "generate_key",
    "load_or_create",
    "load_passphrase",
    "signing_hash",
]

log = logging.getLogger("certforge.ca")

_ISSUER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_LeafExtensions = tuple[x509.Extension[x509.ExtensionType], ...]


@dataclass(frozen=True)
class IssuingCA:
    """An issuing CA with everything a leaf certificate needs from it, computed once."""

    name: str
    certificate: x509.Certificate
    key: CAKey
    chain: tuple[x509.Certificate, ...]  # this CA, then intermediates; not the root
    chain_der: tuple[bytes, ...]
    root: x509.Certificate
    crl_url: str
    ocsp_url: str
    ca_issuers_url: str
    ski: bytes  # the subject key identifier, which leaves carry as their AKI
    crl_shards: int = 1  # > 1: each certificate names one of this many partitioned CRLs
    delta_crl_url: str = ""  # set: certificates name it in a Freshest CRL extension

    @classmethod
    def from_chain(
        cls,
        name: str,
        *,
        chain: tuple[x509.Certificate, ...],
        key: CAKey,
        root: x509.Certificate,
        base_url: str,
        ocsp: bool = True,
        crl_shards: int = 1,
        delta_crl: bool = False,
    ) -> IssuingCA:
        """``ocsp`` False: the CA has no OCSP responder (``[ocsp]``), and its certificates
        name none. ``crl_shards`` > 1: certificates name their partitioned CRL
        (``[crl] shards``)."""
        return cls(
            name=name,
            certificate=chain[0],
            key=key,
            chain=chain,
            chain_der=tuple(c.public_bytes(Encoding.DER) for c in chain),
            root=root,
            crl_url=crl_url(base_url, name),
            ocsp_url=f"{base_url}/ocsp" if ocsp else "",
            ca_issuers_url=ca_issuers_url(base_url, name),
            ski=ski_of(chain[0]),
            crl_shards=crl_shards,
            delta_crl_url=delta_crl_url(base_url, name) if delta_crl else "",
        )

    @cached_property
    def subject(self) -> x509.Name:
        """The issuer name of every leaf; cached because each access parses it again."""
        return self.certificate.subject

    @cached_property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    @cached_property
    def hash_algorithm(self) -> SigningHash | None:
        return signing_hash(self.key)

    def crl_shard(self, serial: int) -> int:
        return serial % self.crl_shards

    def crl_shard_url(self, shard: int) -> str:
        """Partition ``shard``'s CRL: ``.../crl/<issuer>/<shard>.crl``."""
        return f"{self.crl_url.removesuffix('.crl')}/{shard}.crl"

    def leaf_extensions_for(self, serial: int) -> _LeafExtensions:
        """The leaf extensions of the certificate with this serial: with partitioned CRLs,
        its CRL distribution point names its own partition (as Let's Encrypt's do)."""
        if self.crl_shards <= 1:
            return self.leaf_extensions
        return self._sharded_leaf_extensions[serial % self.crl_shards]

    @cached_property
    def leaf_extensions(self) -> _LeafExtensions:
        """AKI (always first), CRL distribution point and AIA: the same in every certificate
        this CA signs (unless its CRL is partitioned: ``leaf_extensions_for``).

        RFC 5280 §4.2.1.1: the AKI "MUST be included in all certificates generated by
        conforming CAs"; §4.2.2.1: the AIA extension "MUST be marked as non-critical".
        """
        return self._leaf_extensions(self.crl_url)

    @cached_property
    def _sharded_leaf_extensions(self) -> tuple[_LeafExtensions, ...]:
        return tuple(self._leaf_extensions(self.crl_shard_url(k)) for k in range(self.crl_shards))

    def _leaf_extensions(self, crl_url: str) -> _LeafExtensions:
        aki = x509.AuthorityKeyIdentifier(
            key_identifier=self.ski, authority_cert_issuer=None, authority_cert_serial_number=None
        )
        cdp = x509.CRLDistributionPoints(
            [
                x509.DistributionPoint(
                    full_name=[x509.UniformResourceIdentifier(crl_url)],
                    relative_name=None,
                    reasons=None,
                    crl_issuer=None,
                )
            ]
        )
        access = [
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(self.ca_issuers_url),
            )
        ]
        if self.ocsp_url:
            ocsp = x509.UniformResourceIdentifier(self.ocsp_url)
            access.insert(0, x509.AccessDescription(AuthorityInformationAccessOID.OCSP, ocsp))
        aia = x509.AuthorityInformationAccess(access)
        values: list[x509.ExtensionType] = [aki, cdp, aia]
        if self.delta_crl_url:
            # RFC 5280 §4.2.1.15: where delta CRLs are; "MUST be marked as non-critical".
            delta = x509.UniformResourceIdentifier(self.delta_crl_url)
            values.append(x509.FreshestCRL([x509.DistributionPoint([delta], None, None, None)]))
        return tuple(x509.Extension(value.oid, False, value) for value in values)


@dataclass(frozen=True)
class CAHierarchy:
    root: x509.Certificate
    root_key: CAKey | None  # None when the root was imported without its key
    issuers: Mapping[str, IssuingCA]
    root_crl_url: str = ""
    root_ca_issuers_url: str = ""

    def issuer(self, name: str) -> IssuingCA:
        try:
            return self.issuers[name]
        except KeyError:
            raise Internal(f"no issuing CA named {name!r} is configured") from None


def load_or_create(config: Config, *, passphrase: bytes | None, now: datetime) -> CAHierarchy:
    """Load the hierarchy from the data directory, creating or importing what is missing."""
    return _Loader(config, passphrase, now).load()


class _Loader:
    """One start's pass over the data directory; holds the root as it becomes known."""

    def __init__(self, config: Config, passphrase: bytes | None, now: datetime) -> None:
        self.ca_config = config.ca
        self.ocsp_config = config.ocsp
        self.crl_shards = config.crl.shards
        self.delta_crl = config.crl.delta_interval_minutes > 0
        self.base_url = config.server.public_http_url.rstrip("/")
        self.data_dir = config.server.data_dir
        self.passphrase = passphrase
        aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
        self.now = aware.astimezone(UTC).replace(microsecond=0)
        self.root: x509.Certificate | None = None
        self.root_key: CAKey | None = None

    @property
    def root_path(self) -> Path:
        return self.data_dir / "root.pem"

    def paths(self, name: str) -> tuple[Path, Path]:
        return self.data_dir / "ca" / f"{name}.pem", self.data_dir / "ca" / f"{name}.key.pem"

    def load(self) -> CAHierarchy:
        _check_issuer_names(self.ca_config)
        self._load_root()
        issuers = {cfg.name: self._issuer(cfg) for cfg in self.ca_config.issuers}
        if self.root is None:  # unreachable: every issuer sets or checks the root
            raise ConfigError("[ca] issuers: at least one issuing CA is needed")
        return CAHierarchy(
            root=self.root,
            root_key=self.root_key,
            issuers=MappingProxyType(issuers),
            root_crl_url=crl_url(self.base_url, ROOT),
            root_ca_issuers_url=ca_issuers_url(self.base_url, ROOT),
        )

    def _load_root(self) -> None:
        key_path = self.paths(ROOT)[1]
        if not self.root_path.exists():
            stored = [c.name for c in self.ca_config.issuers if self.paths(c.name)[0].exists()]
            if stored:
                raise ConfigError(
                    f"{self.root_path} is missing but issuing CA {stored[0]!r} "
                    "exists: restore root.pem from a backup"
                )
            return
        self.root = _read_certificates(self.root_path)[0]
        if not is_self_signed(self.root):
            raise ConfigError(f"{self.root_path} is not a self-signed root certificate")
        if key_path.exists():
            self.root_key = read_key(key_path, self.passphrase)
            check_key_matches(self.root, self.root_key, str(key_path))

    def _issuer(self, cfg: IssuerConfig) -> IssuingCA:
        cert_path, key_path = self.paths(cfg.name)
        if cert_path.exists():
            chain, key = self._load_stored(cfg, cert_path, key_path)
        elif cfg.import_cert or cfg.import_pkcs12:
            chain, key = self._import(cfg)
        else:
            chain, key = self._create_issuer(cfg)
        root = self._check_chains_to_root(cfg.name, chain)
        if chain[0].not_valid_after_utc <= self.now:
            log.error(
                "issuing CA %s expired on %s; it cannot issue until replaced",
                cfg.name,
                chain[0].not_valid_after_utc.isoformat(),
            )
        return IssuingCA.from_chain(
            cfg.name,
            chain=chain,
            key=key,
            root=root,
            base_url=self.base_url,
            ocsp=self.ocsp_config.serves(cfg.name),
            crl_shards=self.crl_shards,
            delta_crl=self.delta_crl,
        )

    def _load_stored(
        self, cfg: IssuerConfig, cert_path: Path, key_path: Path
    ) -> tuple[tuple[x509.Certificate, ...], CAKey]:
        if not key_path.exists():
            raise ConfigError(f"{cert_path} exists but its key {key_path} is missing")
        chain = tuple(_read_certificates(cert_path))
        key = read_key(key_path, self.passphrase)
        check_key_matches(chain[0], key, str(key_path))
        if cfg.import_cert and Path(cfg.import_cert).exists():
            imported = _read_certificates(Path(cfg.import_cert))[0]
            if imported != chain[0]:
                raise ConfigError(
                    f"[[ca.issuers]] {cfg.name} import_cert: {cfg.import_cert} differs from the "
                    f"imported copy {cert_path}; remove {cert_path} and {key_path} to re-import"
                )
        return chain, key

    def _import(self, cfg: IssuerConfig) -> tuple[tuple[x509.Certificate, ...], CAKey]:
        where = f"[[ca.issuers]] {cfg.name}"
        imported = read_import(cfg)
        if self.root is None:
            if imported.root is None:
                raise ConfigError(
                    f"{where}: the import must include the chain up to its "
                    "self-signed root, which becomes root.pem"
                )
            self.root = imported.root
            write_atomic(self.root_path, _pem(imported.root), mode=0o644)
        elif imported.root is not None and imported.root != self.root:
            raise ConfigError(
                f"{where}: the imported chain ends at "
                f"{imported.root.subject.rfc4514_string()}, not at the root "
                f"in root.pem ({self.root.subject.rfc4514_string()})"
            )
        cert_path, key_path = self.paths(cfg.name)
        write_key(key_path, imported.key, self.passphrase)
        write_atomic(cert_path, b"".join(_pem(c) for c in imported.chain), mode=0o644)
        log.info("imported issuing CA %s", cfg.name)
        return imported.chain, imported.key

    def _create_issuer(self, cfg: IssuerConfig) -> tuple[tuple[x509.Certificate, ...], CAKey]:
        if self.root is None:
            self._create_root()
        if self.root is None or self.root_key is None:
            raise ConfigError(
                f"[[ca.issuers]] {cfg.name}: cannot create this issuing CA "
                "because the root's key is not here (the root was imported); "
                "import the issuing CA too (import_cert or import_pkcs12)"
            )
        key = generate_key(cfg.key_type or self.ca_config.key_type)
        cert = issuing_certificate(
            ca_name=self.ca_config.name,
            issuer_name=cfg.name,
            key=key,
            root=(self.root, self.root_key),
            base_url=self.base_url,
            now=self.now,
            validity_days=cfg.validity_days,
        )
        cert_path, key_path = self.paths(cfg.name)
        write_key(key_path, key, self.passphrase)  # the key first: a cert without it is useless
        write_atomic(cert_path, _pem(cert), mode=0o644)
        log.info("created issuing CA %s", cfg.name)
        return (cert,), key

    def _create_root(self) -> None:
        key = generate_key(self.ca_config.key_type)
        cert = root_certificate(
            ca_name=self.ca_config.name,
            key=key,
            now=self.now,
            validity_days=self.ca_config.root_validity_days,
        )
        write_key(self.paths(ROOT)[1], key, self.passphrase)
        write_atomic(self.root_path, _pem(cert), mode=0o644)
        self.root, self.root_key = cert, key
        log.info("created the root CA", extra={"subject": cert.subject.rfc4514_string()})

    def _check_chains_to_root(
        self, name: str, chain: tuple[x509.Certificate, ...]
    ) -> x509.Certificate:
        root = self.root
        linked = all(is_issued_by(child, parent) for child, parent in itertools.pairwise(chain))
        if root is None or not linked or not (chain[-1] == root or is_issued_by(chain[-1], root)):
            raise ConfigError(f"issuing CA {name!r} does not chain to the root in root.pem")
        return root


def _check_issuer_names(ca: CAConfig) -> None:
    """Issuer names become file names and URL paths, so they must be safe as both."""
    for cfg in ca.issuers:
        if cfg.name == ROOT or not _ISSUER_NAME.match(cfg.name):
            raise ConfigError(
                f"[[ca.issuers]] name: {cfg.name!r} must be letters, digits, '.', "
                f"'_' or '-' (at most 64) and not {ROOT!r}"
            )


def _read_certificates(path: Path) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable as PEM certificates") from exc


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)
