"""Publishing CRLs: one full CRL per issuing CA (and one for the root, when its key is here),
re-issued on a schedule and on demand, kept in memory for the HTTP listener to serve at the
URL certificates name in their CRL distribution point.

Partitioned CRLs (``[crl] shards`` > 1), for very large CAs: each certificate names partition
``serial mod shards`` in its CRL distribution point (``IssuingCA.leaf_extensions_for``), and
each partition is a CRL of its own at ``/crl/<issuer>/<k>.crl`` whose issuing distribution
point names that URL (RFC 5280 §5.2.5), listing only that partition's certificates. They are
built in the same pass over the store as the full CRL, which is still published for the
certificates issued before partitioning was switched on. One publication gives the full CRL
and every partition the same cRLNumber, so each partition's numbers grow too.

Each CRL gets the next cRLNumber of its CA from a store document (kind ``crl``, id the CA's
name), advanced by a conditional update: numbers only grow, also across servers sharing the
store and across restarts (RFC 5280 §5.2.3: "monotonically increasing"). Entries are read from
the store a page at a time in serial order and encoded as they come, so a CRL of a million
entries is never held as a million objects; encoding and signing run off the event loop.
A certificate drops off the CRL once it has expired (RFC 5280 §3.3 allows it; its status no
longer matters to anyone validating at the CRL's thisUpdate).

Every CRL published records a ``crl_published`` event for the exit modules, carrying the CRL
in PEM while it is small enough to travel in an event (``EVENT_PEM_LIMIT``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from server.ca.cacerts import ROOT, ski_of
from server.ca.issuers import CAHierarchy
from server.ca.keystore import CAKey
from server.config import CRLConfig
from server.errors import Conflict, NotFound
from server.model import Clock, Document, Event, EventKind, RevocationReason, RevokedEntry
from server.revocation.crl import CRLHeader, EncodedEntries, build_template, splice_entries
from server.revocation.crlfiles import CRLFiles
from server.revocation.published import PublishedCRL
from server.store.base import Store

log = logging.getLogger("certforge.crl")

PAGE = 10_000  # entries read from the store per query
EVENT_PEM_LIMIT = 1 << 20  # larger CRLs are announced without their PEM
NUMBER_KIND = "crl"


@dataclass(frozen=True, slots=True)
class _Signer:
    name: str
    subject: x509.Name
    ski: bytes
    key: CAKey
    url: str
    is_root: bool
    shard_urls: tuple[str, ...] = ()
    delta_url: str = ""


class CRLPublisher:
    def __init__(
        self,
        *,
        store: Store,
        cas: CAHierarchy,
        config: CRLConfig,
        clock: Clock,
        notify: Callable[[], None] = lambda: None,
        directory: Path | None = None,
    ) -> None:
        """``directory``: where the newest CRLs are shared with the other workers of this
        server (``crlfiles.py``); None keeps them in memory only."""
        self._files = CRLFiles(directory) if directory is not None else None
        self._store = store
        self._config = config
        self._clock = clock
        self._notify = notify
        self._latest: dict[str, PublishedCRL] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._signers = {
            name: _Signer(
                name,
                ca.subject,
                ca.ski,
                ca.key,
                ca.crl_url,
                is_root=False,
                shard_urls=tuple(ca.crl_shard_url(k) for k in range(ca.crl_shards))
                if ca.crl_shards > 1
                else (),
                delta_url=ca.delta_crl_url,
            )
            for name, ca in cas.issuers.items()
        }
        if cas.root_key is not None:
            self._signers[ROOT] = _Signer(
                ROOT, cas.root.subject, ski_of(cas.root), cas.root_key, cas.root_crl_url, True
            )
        self._keys = self._crl_keys()

    def _crl_keys(self) -> dict[str, tuple[str, int | None]]:
        """Every CRL this publisher may serve: key -> (CA name, partition)."""
        keys: dict[str, tuple[str, int | None]] = {}
        for name, signer in self._signers.items():
            keys[name] = (name, None)
            keys |= {f"{name}/{k}": (name, k) for k in range(len(signer.shard_urls))}
            if signer.delta_url:
                keys[f"{name}/delta"] = (name, None)
        return keys

    @property
    def names(self) -> list[str]:
        return list(self._signers)

    def latest(self, key: str) -> PublishedCRL | None:
        """The newest CRL this process published for CA ``key``, or for partition ``k`` of
        CA ``name`` with ``key`` ``name/k`` (``name/delta``: its delta CRL)."""
        return self._latest.get(key)

    def published(self) -> list[PublishedCRL]:
        """The newest CRL of each key this process published (the monitor's gauges)."""
        return list(self._latest.values())

    async def current(self, key: str) -> PublishedCRL | None:
        """The newest CRL for ``key`` published by any worker of this server: what the HTTP
        listener serves. Only keys of CAs configured here are looked up on disk."""
        where = self._keys.get(key)
        if where is None:
            return None
        mine = self._latest.get(key)
        if self._files is None:
            return mine
        shared = await asyncio.to_thread(self._files.load, key, *where)
        if shared is None or (mine is not None and mine.number >= shared.number):
            return mine
        return shared

    async def _share(self, crls: list[PublishedCRL]) -> None:
        if self._files is not None:
            for crl in crls:
                await asyncio.to_thread(self._files.save, crl)

    async def publish_all(self) -> list[PublishedCRL]:
        return [crl for name in self._signers for crl in await self.publish_ca(name)]

    async def publish(self, name: str) -> PublishedCRL:
        """Publish the CA's CRLs; its full CRL."""
        return (await self.publish_ca(name))[0]

    async def publish_ca(self, name: str) -> list[PublishedCRL]:
        """Publish the CA's CRLs: its full CRL, then its partitions (if any)."""
        signer = self._signers.get(name)
        if signer is None:
            raise NotFound(f"no CA named {name!r} publishes CRLs here")
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:  # one build at a time per CA: the newest number is served last
            crls = await self._build(signer)
            for crl in crls:
                self._latest[crl.key] = crl
            await self._share(crls)
        for crl in crls:
            await self._announce(signer, crl)
        return crls

    async def publish_deltas(self) -> list[PublishedCRL]:
        return [await self.publish_delta(name) for name, s in self._signers.items() if s.delta_url]

    async def publish_delta(self, name: str) -> PublishedCRL:
        """A delta CRL of the CA's newest complete CRL (published first if there is none)."""
        signer = self._signers.get(name)
        if signer is None or not signer.delta_url:
            raise NotFound(f"no CA named {name!r} publishes delta CRLs here")
        base = self._latest.get(name) or await self.publish(name)
        async with self._locks.setdefault(name, asyncio.Lock()):
            crl = await self._build_delta(signer, base)
            self._latest[crl.key] = crl
            await self._share([crl])
        await self._announce(signer, crl)
        return crl

    async def run(self) -> None:
        """Re-issue every CRL each ``interval_minutes`` (and delta CRLs each
        ``delta_interval_minutes`` in between), for as long as the server runs."""
        full_every = self._config.interval_minutes * 60.0
        tick = self._config.delta_interval_minutes * 60.0 or full_every
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            try:
                if time.monotonic() - last_full >= full_every - tick / 2:
                    await self.publish_all()
                    last_full = time.monotonic()
                else:
                    await self.publish_deltas()
            except Exception:
                log.exception("publishing CRLs failed; the previous ones are served until retry")

    async def _build(self, signer: _Signer) -> list[PublishedCRL]:
        this_update = self._clock.now().replace(microsecond=0)
        number = await self._next_number(signer.name)
        urls = [signer.url, *signer.shard_urls]
        headers = [
            CRLHeader(
                issuer=signer.subject,
                authority_key_id=signer.ski,
                number=number,
                this_update=this_update,
                next_update=this_update + timedelta(hours=self._config.next_update_hours),
                distribution_point=url,
                covers_ca_certificates=signer.is_root,
                freshest_url=signer.delta_url,
            )
            for url in urls
        ]
        templates = [await asyncio.to_thread(build_template, h, signer.key) for h in headers]
        if signer.is_root:
            entries = EncodedEntries.empty(0)
        else:
            entries = await self._entries(signer, this_update, len(signer.shard_urls))
        crls = []
        for i, (header, template) in enumerate(zip(headers, templates, strict=True)):
            body, count = entries.full() if i == 0 else entries.shard(i - 1)
            der = await asyncio.to_thread(splice_entries, template, body, signer.key)
            shard = None if i == 0 else i - 1
            crls.append(
                PublishedCRL(
                    signer.name, number, this_update, header.next_update, count, der, shard
                )
            )
        return crls

    async def _build_delta(self, signer: _Signer, base: PublishedCRL) -> PublishedCRL:
        this_update = self._clock.now().replace(microsecond=0)
        header = CRLHeader(
            issuer=signer.subject,
            authority_key_id=signer.ski,
            number=await self._next_number(signer.name),  # one sequence with complete CRLs
            this_update=this_update,
            next_update=min(
                this_update + timedelta(minutes=2 * self._config.delta_interval_minutes),
                base.next_update,
            ),
            distribution_point=signer.url,  # the base's scope
            base_number=base.number,
        )
        template = await asyncio.to_thread(build_template, header, signer.key)
        entries = await self._entries(signer, this_update, 0, since=base.this_update)
        released = await self._store.find_released(
            signer.name, since=base.this_update, expires_after=this_update
        )
        removed = [RevokedEntry(s, this_update, RevocationReason.REMOVE_FROM_CRL) for s in released]
        await asyncio.to_thread(entries.add, removed)
        body, count = entries.full()
        der = await asyncio.to_thread(splice_entries, template, body, signer.key)
        return PublishedCRL(
            signer.name,
            header.number,
            this_update,
            header.next_update,
            count,
            der,
            base_number=base.number,
        )

    async def _entries(
        self, signer: _Signer, now: datetime, shards: int, *, since: datetime | None = None
    ) -> EncodedEntries:
        """The encoded revokedCertificates of the CA's unexpired revoked certificates, and of
        each partition's."""
        entries = EncodedEntries.empty(shards)
        after = 0
        while True:
            page = await self._store.find_revoked(
                signer.name, expires_after=now, after_serial=after, limit=PAGE, revoked_since=since
            )
            if not page:
                break
            await asyncio.to_thread(entries.add, page)
            after = page[-1].serial
            if len(page) < PAGE:
                break
        return entries

    async def _next_number(self, name: str) -> int:
        """The CA's next cRLNumber, advanced in the store by a conditional write."""
        while True:
            try:
                doc = await self._store.get_doc(NUMBER_KIND, name)
            except NotFound:
                try:
                    await self._store.put_doc(Document(NUMBER_KIND, name, {"number": 1}))
                    return 1
                except Conflict:
                    continue  # another server made it first
            number = int(doc.data["number"]) + 1
            try:
                await self._store.update_doc(
                    Document(NUMBER_KIND, name, {"number": number}), expect_version=doc.version
                )
                return number
            except Conflict:
                continue  # another server took this number; take the next

    async def _announce(self, signer: _Signer, crl: PublishedCRL) -> None:
        data: dict[str, object] = {
            "issuer": crl.issuer,
            "number": crl.number,
            "this_update": crl.this_update.isoformat(),
            "next_update": crl.next_update.isoformat(),
            "entries": crl.entries,
            "url": signer.url if crl.shard is None else signer.shard_urls[crl.shard],
        }
        if crl.shard is not None:
            data["shard"] = crl.shard
        if crl.base_number is not None:
            data["delta_of"] = crl.base_number
            data["url"] = signer.delta_url
        if len(crl.der) <= EVENT_PEM_LIMIT:
            data["crl_pem"] = crl.pem()
        await self._store.add_event(Event(EventKind.CRL_PUBLISHED, self._clock.now(), data=data))
        self._notify()
        log.info(
            "published CRL",
            extra={"crl": crl.key, "number": crl.number, "entries": crl.entries},
        )
