"""Bytes written to storage per issuance, through ``Engine.submit`` with the SQLite store.

    .venv/bin/python -m bench.writes [--count 2000] [--concurrency 1 16 64]

Counts what the process hands to ``write()`` (``wchar`` in ``/proc/self/io``: the WAL, and
the database file at checkpoints) over ``count`` issuances with ``concurrency`` submitters,
after a warm-up of the same size, and divides by ``count``. Every index entry an issuance
adds on a page of its own costs a whole page in the WAL (see ``server/store/sqlite_schema``),
so this is the figure a new index must be weighed by. One submitter commits each issuance
alone (the worst case); 64 share their commits (``bench.issuance``'s load).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from policies.profiles import ProfilePolicy
from server.ca.issuers import load_or_create
from server.config import Config
from server.engine import Engine, EngineDeps
from server.model import AuthMethod, EnrollmentRequest, Requester, Role
from server.store.sqlite import SQLiteStore
from tests.unit.factories import make_csr

REQUESTER = Requester(AuthMethod.TOKEN, "bench", frozenset({Role.REQUESTER}))


def written() -> int:
    with open("/proc/self/io") as f:
        fields = dict(line.split(": ") for line in f.read().splitlines())
    return int(fields["wchar"])


async def measure(data_dir: Path, count: int, concurrency: int) -> float:
    config = Config().with_data_dir(data_dir)
    store = SQLiteStore(f"sqlite:///{data_dir}/certforge.db", consumers=["webhook"])
    await store.open()
    cas = load_or_create(config, passphrase=None, now=datetime.now(UTC))
    engine = Engine(
        EngineDeps(
            store=store,
            cas=cas,
            profiles=config.profiles,
            default_profile="tls-server",
            policies=[ProfilePolicy(config)],
        )
    )
    csrs = [make_csr(f"host{i}.writes.example.test") for i in range(200)]

    async def run(n: int) -> None:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                i = queue.pop()
                await engine.submit(EnrollmentRequest(csrs[i % len(csrs)], "rest", REQUESTER))

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    try:
        await run(count)  # warm-up: the tree shapes of a store in use
        before = written()
        await run(count)
        return (written() - before) / count
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    args = parser.parse_args()
    for concurrency in args.concurrency:
        with tempfile.TemporaryDirectory() as tmp:
            per = asyncio.run(measure(Path(tmp), args.count, concurrency))
        print(f"concurrency {concurrency:3}: {per / 1024:7.1f} KiB written per issuance")


if __name__ == "__main__":
    main()
