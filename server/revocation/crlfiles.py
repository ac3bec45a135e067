"""The newest CRLs on disk, shared by the worker processes of one server (``[server]
workers``) through the data directory: ``<data_dir>/crl/<issuer>.crl``,
``<issuer>/<k>.crl`` (partitions) and ``<issuer>/delta.crl``, DER, as the URLs name them.

Whichever worker publishes (on its schedule, or because ``certforge crl publish`` reached it)
writes the file; every worker serves the newest file, reloading it when its mtime changes. A
file is replaced only by a CRL with a higher cRLNumber, under an exclusive lock, so a slow
worker never puts back an older CRL. Servers on other machines have their own data directory
and publish for themselves (their numbers still come from the one store).
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from server.durable import write_atomic
from server.revocation.published import PublishedCRL


@dataclass
class CRLFiles:
    directory: Path
    _loaded: dict[str, tuple[int, PublishedCRL]] = field(default_factory=dict)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.crl"

    def save(self, crl: PublishedCRL) -> None:
        """Write ``crl`` unless the file already holds a newer one (blocking)."""
        path = self.path(crl.key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with (self.directory / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self._read(path, crl.issuer, crl.shard)
            if current is None or current.number < crl.number:
                write_atomic(path, crl.der, mode=0o644)

    def load(self, key: str, issuer: str, shard: int | None) -> PublishedCRL | None:
        """The file's CRL for ``key`` (blocking; cached until the file changes)."""
        path = self.path(key)
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        cached = self._loaded.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        crl = self._read(path, issuer, shard)
        if crl is not None:
            self._loaded[key] = (mtime, crl)
        return crl

    @staticmethod
    def _read(path: Path, issuer: str, shard: int | None) -> PublishedCRL | None:
        try:
            der = path.read_bytes()
            parsed = x509.load_der_x509_crl(der)
            number = parsed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        except (OSError, ValueError, x509.ExtensionNotFound):
            return None  # missing, or half a file from a crash: our own CRL serves
        next_update = parsed.next_update_utc
        if next_update is None:
            return None
        try:
            delta = parsed.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
            base_number: int | None = delta.value.crl_number
        except x509.ExtensionNotFound:
            base_number = None
        return PublishedCRL(
            issuer,
            number,
            parsed.last_update_utc,
            next_update,
            len(parsed),
            der,
            shard=shard,
            base_number=base_number,
        )
