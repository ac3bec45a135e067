"""The files exit: certificates and CRLs as PEM files, written atomically and idempotently."""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.config import Config, ServerConfig
from server.errors import ConfigError
from server.exits.files import FilesExit, create, write_atomically
from server.model import Event, EventKind

CERT_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
CRL_PEM = "-----BEGIN X509 CRL-----\nMIIC\n-----END X509 CRL-----\n"


def issued(serial: str = "0a1B2c", pem: str = CERT_PEM, **extra: Any) -> Event:
    return Event(
        kind=EventKind.ISSUED,
        at=datetime(2025, 1, 1, tzinfo=UTC),
        serial=0xA1B2C,
        data={"serial": serial, "issuer": "default", "certificate_pem": pem, **extra},
    )


def crl_published(issuer: str = "default", pem: str = CRL_PEM, number: int = 1) -> Event:
    return Event(
        kind=EventKind.CRL_PUBLISHED,
        at=datetime(2025, 1, 1, tzinfo=UTC),
        data={"issuer": issuer, "crl_number": number, "crl_pem": pem},
    )


@pytest.fixture
def exports(tmp_path: Path) -> FilesExit:
    config = Config(server=ServerConfig(data_dir=tmp_path))
    return create(config, {"name": "files", "directory": "exports"})


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob(".*.tmp"))


def files_under(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


async def test_issued_certificate_is_written_under_its_serial(
    exports: FilesExit, tmp_path: Path
) -> None:
    await exports.deliver(issued())
    path = tmp_path / "exports" / "certs" / "a1b2c.pem"
    assert path.read_text() == CERT_PEM
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert leftovers(tmp_path) == []


async def test_published_crl_replaces_the_previous_one(exports: FilesExit) -> None:
    await exports.deliver(crl_published(pem=CRL_PEM, number=1))
    newer = CRL_PEM.replace("MIIC", "MIID")
    await exports.deliver(crl_published(pem=newer, number=2))
    assert (exports.directory / "crls" / "default.crl").read_text() == newer


async def test_partition_crl_goes_beside_the_full_one(exports: FilesExit) -> None:
    shard = crl_published(pem=CRL_PEM.replace("MIIC", "MIIS"))
    shard = Event(shard.kind, shard.at, data={**shard.data, "shard": 3})
    await exports.deliver(crl_published())
    await exports.deliver(shard)
    assert (exports.directory / "crls" / "default.crl").read_text() == CRL_PEM
    assert "MIIS" in (exports.directory / "crls" / "default" / "3.crl").read_text()


async def test_delta_crl_goes_beside_the_full_one(exports: FilesExit) -> None:
    delta = crl_published(pem=CRL_PEM.replace("MIIC", "MIID"))
    delta = Event(delta.kind, delta.at, data={**delta.data, "delta_of": 4})
    await exports.deliver(crl_published())
    await exports.deliver(delta)
    assert (exports.directory / "crls" / "default.crl").read_text() == CRL_PEM
    assert "MIID" in (exports.directory / "crls" / "default" / "delta.crl").read_text()


async def test_redelivery_is_idempotent(exports: FilesExit) -> None:
    event = issued()
    await exports.deliver(event)
    path = exports.directory / "certs" / "a1b2c.pem"
    first = path.stat()
    await exports.deliver(event)
    again = path.stat()
    assert path.read_text() == CERT_PEM
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a1b2c.pem"]


async def test_a_reader_never_sees_half_a_file(exports: FilesExit) -> None:
    await exports.deliver(crl_published(pem=CRL_PEM))
    path = exports.directory / "crls" / "default.crl"
    with path.open() as reader:  # a reader that opened the old CRL keeps all of it
        newer = CRL_PEM.replace("MIIC", "MIID" * 1000)
        await exports.deliver(crl_published(pem=newer, number=2))
        assert reader.read() == CRL_PEM
    assert path.read_text() == newer


async def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    exports: FilesExit, monkeypatch: pytest.MonkeyPatch
) -> None:
    await exports.deliver(crl_published(pem=CRL_PEM))

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):  # raised: the dispatcher will retry
        await exports.deliver(crl_published(pem=CRL_PEM.replace("MIIC", "MIID"), number=2))
    assert (exports.directory / "crls" / "default.crl").read_text() == CRL_PEM
    assert leftovers(exports.directory) == []


@pytest.mark.parametrize(
    "kind", [k for k in EventKind if k not in (EventKind.ISSUED, EventKind.CRL_PUBLISHED)]
)
async def test_other_kinds_are_ignored(exports: FilesExit, kind: EventKind) -> None:
    await exports.deliver(
        Event(
            kind=kind,
            at=datetime(2025, 1, 1, tzinfo=UTC),
            serial=1,
            data={"serial": "1", "issuer": "default", "reason": "x"},
        )
    )
    assert not exports.directory.exists()


async def test_events_filter(tmp_path: Path) -> None:
    config = Config(server=ServerConfig(data_dir=tmp_path))
    crls_only = create(config, {"directory": str(tmp_path / "out"), "events": ["crl_published"]})
    await crls_only.deliver(issued())
    await crls_only.deliver(crl_published())
    assert files_under(tmp_path) == ["out/crls/default.crl"]


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(issued(pem=""), id="unusable/no_certificate_pem"),
        pytest.param(issued(serial="xyz"), id="unusable/serial_not_hex"),
        pytest.param(crl_published(issuer="../../etc/passwd"), id="unusable/issuer_path"),
        pytest.param(crl_published(issuer=".hidden"), id="unusable/issuer_dotfile"),
        pytest.param(crl_published(pem=""), id="unusable/no_crl_pem"),
    ],
)
async def test_an_unwritable_event_is_logged_and_skipped(
    exports: FilesExit, event: Event, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.ERROR, logger="certforge.exits"):
        await exports.deliver(event)  # returns: retrying could never succeed
    assert [r.__dict__["event_id"] for r in caplog.records] == [event.id]
    assert files_under(tmp_path) == []


def test_write_atomically_creates_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.pem"
    write_atomically(target, b"x", mode=0o600)
    assert target.read_bytes() == b"x"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_absolute_directory_is_kept(tmp_path: Path) -> None:
    module = create(Config(), {"directory": str(tmp_path)})
    assert module.directory == tmp_path
    assert module.name == "files"


@pytest.mark.parametrize(
    ("options", "key"),
    [
        pytest.param({}, "directory", id="missing/directory"),
        pytest.param({"directory": ""}, "directory", id="bad_directory/empty"),
        pytest.param({"directory": "x", "events": ["nope"]}, "events", id="bad_events/unknown"),
        pytest.param({"directory": "x", "mode": "0644"}, "mode", id="unknown_key"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^\[\[exits\]\] out {key}: "):
        create(Config(), {"name": "out", **options})
