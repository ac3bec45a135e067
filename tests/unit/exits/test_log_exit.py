"""The log exit: one JSON line per event, to the ``certforge.events`` logger or a file."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.config import Config, ServerConfig
from server.errors import ConfigError
from server.exits.log import create, event_line
from server.model import Event, EventKind

AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def issued() -> Event:
    return Event(
        kind=EventKind.ISSUED,
        at=AT,
        request_id="r1",
        serial=0xABC,
        id="ev1",
        data={"serial": "abc", "subject": "CN=a", "certificate_pem": "-----BEGIN"},
    )


def revoked() -> Event:
    return Event(
        kind=EventKind.REVOKED,
        at=AT,
        serial=0xABC,
        id="ev2",
        data={"serial": "abc", "issuer": "default", "reason": "keyCompromise"},
    )


async def test_writes_one_json_line_to_the_events_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = create(Config(), {"name": "audit"})
    with caplog.at_level(logging.DEBUG, logger="certforge.events"):
        await module.deliver(revoked())
    [record] = caplog.records
    assert record.name == "certforge.events"
    assert record.levelno == logging.INFO
    line = record.getMessage()
    assert "\n" not in line
    assert json.loads(line) == {
        "id": "ev2",
        "kind": "revoked",
        "at": "2025-01-02T03:04:05+00:00",
        "request_id": None,
        "serial": "abc",
        "data": {"serial": "abc", "issuer": "default", "reason": "keyCompromise"},
    }


async def test_level_option(caplog: pytest.LogCaptureFixture) -> None:
    module = create(Config(), {"level": "warning"})
    with caplog.at_level(logging.DEBUG, logger="certforge.events"):
        await module.deliver(revoked())
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


async def test_appends_lines_to_a_file(tmp_path: Path) -> None:
    config = Config(server=ServerConfig(data_dir=tmp_path))
    module = create(config, {"path": "logs/events.jsonl"})
    await module.deliver(issued())
    await module.deliver(revoked())
    lines = (tmp_path / "logs" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["ev1", "ev2"]


async def test_pem_is_left_out_unless_asked_for(tmp_path: Path) -> None:
    assert "certificate_pem" not in json.loads(event_line(issued()))["data"]
    assert json.loads(event_line(issued(), include_pem=True))["data"]["certificate_pem"]
    module = create(Config(), {"path": str(tmp_path / "e.jsonl"), "include_pem": True})
    await module.deliver(issued())
    assert "certificate_pem" in (tmp_path / "e.jsonl").read_text()


async def test_events_filter(caplog: pytest.LogCaptureFixture) -> None:
    module = create(Config(), {"events": ["issued"]})
    with caplog.at_level(logging.DEBUG, logger="certforge.events"):
        await module.deliver(revoked())
        await module.deliver(issued())
    assert [json.loads(r.getMessage())["kind"] for r in caplog.records] == ["issued"]


@pytest.mark.parametrize(
    ("options", "key"),
    [
        pytest.param({"level": "loud"}, "level", id="bad_level/unknown"),
        pytest.param({"path": 3}, "path", id="bad_path/type"),
        pytest.param({"path": ""}, "path", id="bad_path/empty"),
        pytest.param({"include_pem": "yes"}, "include_pem", id="bad_include_pem/type"),
        pytest.param({"format": "text"}, "format", id="unknown_key"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^\[\[exits\]\] audit {key}: "):
        create(Config(), {"name": "audit", **options})
