"""Where a server is: recorded by ``certforge serve``, found by the admin client.

``certforge serve`` writes ``<data_dir>/server.json`` once it listens (``when_ready``):
the URL at which this machine reaches its HTTPS listener, its HTTP listener, the public
URLs, its pid and the configuration file it read. The admin client (``find_server``)
reaches the server from, first to last:

1. ``--url``;
2. the configuration file (``--config FILE``, else ``$CERTFORGE_CONFIG``): its
   ``[server] https_listen`` (a wildcard address is reached on the loopback);
3. ``<data_dir>/server.json``, written by the last server started on that directory;
4. https://127.0.0.1:8443.

The data directory (``admin.token`` and ``root.pem``) is ``--data-dir``, else the
configuration file's ``[server] data_dir``, else ``./certforge-data``. So an admin command
given the options ``certforge serve`` was given reaches that server.

The listener, not ``public_https_url``, because the client runs beside the server (it reads
the data directory) and the public URL may be a name or a proxy this machine cannot use; the
server's TLS certificate names both (server/tls.py ``server_names``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from server.config import Config, HostPort, load_config
from server.durable import write_atomic

DEFAULT_URL = "https://127.0.0.1:8443"
DEFAULT_DATA_DIR = Path("certforge-data")
CONFIG_ENV = "CERTFORGE_CONFIG"
SERVER_FILE = "server.json"

log = logging.getLogger("certforge")


@dataclass(frozen=True, slots=True)
class Target:
    """The server an admin command talks to, and the data directory it trusts."""

    url: str
    data_dir: Path

    @property
    def root(self) -> Path:
        return self.data_dir / "root.pem"


def local_url(listen: HostPort, scheme: str = "https") -> str:
    """The URL at which this machine reaches a listener."""
    host = listen.host
    if host == "0.0.0.0":  # noqa: S104 - a wildcard listener, reached on the loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "localhost"  # the TLS certificate of a wildcard listener names localhost
    elif ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{listen.port}"


def find_server(
    *,
    config: str | None,
    data_dir: str | None,
    url: str | None,
    environ: Mapping[str, str] = os.environ,
) -> Target:
    """The server to talk to (the order is the module docstring's). Raises ``ConfigError``
    for a configuration file that cannot be read or is not valid."""
    path = config or environ.get(CONFIG_ENV) or None
    loaded = load_config(Path(path)) if path else None
    if data_dir:
        directory = Path(data_dir)
    else:
        directory = loaded.server.data_dir if loaded else DEFAULT_DATA_DIR
    if url:
        return Target(url.rstrip("/"), directory)
    if loaded is not None:
        return Target(local_url(loaded.server.https_listen), directory)
    return Target(recorded_url(directory) or DEFAULT_URL, directory)


def recorded_url(data_dir: Path) -> str | None:
    """The URL in ``<data_dir>/server.json``; None when there is none that can be read."""
    try:
        recorded = json.loads((data_dir / SERVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    url = recorded.get("url") if isinstance(recorded, dict) else None
    return url.rstrip("/") if isinstance(url, str) and url.startswith("https://") else None


def record_server(config: Config, *, config_path: Path | None) -> None:
    """Write ``<data_dir>/server.json`` for the admin client; atomically, so a client never
    reads half of one (server/durable.py)."""
    s = config.server
    record = {
        "url": local_url(s.https_listen),
        "http_url": local_url(s.http_listen, "http"),
        "public_https_url": s.public_https_url,
        "public_http_url": s.public_http_url,
        "pid": os.getpid(),
        "config": str(config_path.resolve()) if config_path else None,
    }
    data = (json.dumps(record, indent=2) + "\n").encode()
    write_atomic(s.data_dir / SERVER_FILE, data, mode=0o644)


def first_start_message(config: Config, *, prog: str) -> str:
    """What a new user needs after the first start, in plain words (``certforge serve``
    prints it to stderr, beside its JSON log lines)."""
    s = config.server
    data_dir = s.data_dir.resolve()
    https, http = local_url(s.https_listen), local_url(s.http_listen, "http")
    https_public = "" if s.public_https_url == https else f" (public URL {s.public_https_url})"
    http_public = "" if s.public_http_url == http else f" (public URL {s.public_http_url})"
    return "\n".join(
        [
            f"certforge: first start: created a CA in {data_dir}",
            f"  trust anchor for clients: {data_dir / 'root.pem'}",
            f"  administrator token:      {data_dir / 'admin.token'} (mode 0600)",
            f"  HTTPS (ACME, EST, REST, admin API): {https}{https_public}",
            f"  HTTP (SCEP, OCSP, CRLs):            {http}{http_public}",
            f"Try, in another terminal: {prog} cert list --data-dir {data_dir}",
            "Stop with Ctrl-C (SIGTERM).",
        ]
    )


def when_ready(config: Config, *, config_path: Path | None) -> Callable[[], None]:
    """What ``certforge serve`` does once it listens (with workers: once, in the parent):
    record where it is for the admin client, and on a first start (no root.pem before this
    start) tell a new user where everything is. Two processes making a first start on one
    data directory together both count as first."""
    first = not (config.server.data_dir / "root.pem").exists()

    def ready() -> None:
        try:
            record_server(config, config_path=config_path)
        except OSError as exc:  # the server serves on; only the admin client's hint is lost
            log.warning("cannot write %s: %s", config.server.data_dir / SERVER_FILE, exc)
        if first:
            print(first_start_message(config, prog=_prog()), file=sys.stderr, flush=True)

    return ready


def _prog() -> str:
    """``certforge`` when that is the command on PATH, else the path this one was run by
    (``./dev serve`` runs .venv/bin/certforge, which is seldom on PATH)."""
    run_as = Path(sys.argv[0])
    found = shutil.which("certforge")
    if run_as.name != "certforge" or (found and Path(found).resolve() == run_as.resolve()):
        return "certforge"
    return str(run_as.resolve())
