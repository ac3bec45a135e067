"""The EST front end's table, ``[est]``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from server.config import Config, Section, Table


@dataclass(frozen=True, slots=True)
class ESTConfig:
    # PEM files of external CAs (a manufacturer's IDevID CA) whose client certificates EST
    # accepts; a relative path is in the data directory.
    trust_anchors: tuple[Path, ...] = ()
    retry_after: int = 60  # seconds, the Retry-After of a pending enrollment (202)


def parse(t: Table, core: Config) -> ESTConfig:
    d = ESTConfig()
    anchors = tuple(Path(p) for p in t.strings("trust_anchors", ()))
    cfg = ESTConfig(trust_anchors=anchors, retry_after=t.positive("retry_after", d.retry_after))
    t.done()
    return cfg


EXAMPLE = """\
[est]
# PEM files of external CAs (e.g. a device manufacturer's IDevID CA) whose TLS client
# certificates EST accepts for simpleenroll, besides certificates this CA issued. Every
# certificate in the files is trusted directly. A relative path is in the data directory.
trust_anchors = []
retry_after = 60               # seconds: the Retry-After of a pending enrollment (HTTP 202)
"""

SECTION = Section("est", ESTConfig, parse, EXAMPLE)
