"""The REST front end's table, ``[rest]``."""

from __future__ import annotations

from dataclasses import dataclass

from server.config import Config, Section, Table
from server.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RESTConfig:
    # Anonymous submissions (no token) per client address and hour; 0: no limit. They wait
    # for an administrator, so each is a row anyone could add: a script should use a token.
    anonymous_requests_per_hour: int = 60


def parse(t: Table, core: Config) -> RESTConfig:
    d = RESTConfig()
    limit = t.get("anonymous_requests_per_hour", int, d.anonymous_requests_per_hour)
    if limit < 0:
        raise ConfigError(f"{t.name('anonymous_requests_per_hour')}: must be 0 (no limit) or more")
    t.done()
    return RESTConfig(anonymous_requests_per_hour=limit)


EXAMPLE = """\
[rest]
anonymous_requests_per_hour = 60   # submissions without a token per client address; 0 = none
                                   # (each waits for an administrator: scripts use a token)
"""

SECTION = Section("rest", RESTConfig, parse, EXAMPLE)
