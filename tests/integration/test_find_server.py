"""The admin command line finds the server it is meant for: from --config, from
$CERTFORGE_CONFIG or from the data directory's server.json, on ports that are not the
defaults; a server of another CA is named in one line; and ``request submit`` sends
nothing that is not a certificate request."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.ca.issuers import load_or_create
from server.config import Config
from tests.integration.openssl import make_csr
from tests.integration.server import CERTFORGE, CertforgeServer


def certforge(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line as a user runs it: no --url, and no CERTFORGE_CONFIG unless given."""
    base = {k: v for k, v in os.environ.items() if k != "CERTFORGE_CONFIG"}
    return subprocess.run(
        [CERTFORGE, *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def config_file(server: CertforgeServer) -> Path:
    return server.data_dir.parent / f"{server.data_dir.name}.toml"  # as server.py writes it


def test_the_server_records_where_it_listens(server: CertforgeServer) -> None:
    recorded = json.loads((server.data_dir / "server.json").read_text())
    assert recorded["url"] == server.url
    assert recorded["http_url"] == server.http_url
    assert recorded["config"] == str(config_file(server))


@pytest.mark.parametrize("how", ["config_option", "config_env", "data_dir_only"])
def test_cli_reaches_a_server_on_other_ports(server: CertforgeServer, work: Path, how: str) -> None:
    assert server.https_port != 8443
    args, env = {
        "config_option": (["--config", str(config_file(server))], {}),
        "config_env": ([], {"CERTFORGE_CONFIG": str(config_file(server))}),
        "data_dir_only": (["--data-dir", str(server.data_dir)], {}),
    }[how]
    listed = certforge("cert", "list", "--json", *args, cwd=work, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "certificates" in json.loads(listed.stdout)


def test_the_wrong_ca_is_named_in_one_line(server: CertforgeServer, work: Path) -> None:
    other = work / "alt-data"
    load_or_create(Config().with_data_dir(other), passphrase=None, now=datetime.now(UTC))
    (other / "admin.token").write_text("not-this-server-s-token\n")
    result = certforge("cert", "list", "--data-dir", str(other), "--url", server.url, cwd=work)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"certforge: the server at {server.url} is not the CA of {other / 'root.pem'}"
    ]


def request_ids(server: CertforgeServer) -> set[str]:
    listed = server.cli("request", "list", "--json", check=True).stdout
    return {r["id"] for r in json.loads(listed)["requests"]}


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("key", "is a private key, not a certificate request"),
        ("cert", "is a certificate, not a certificate request"),
        ("garbage", "is not a PEM or DER certificate request"),
    ],
)
def test_submit_sends_nothing_that_is_not_a_request(
    server: CertforgeServer, work: Path, kind: str, says: str
) -> None:
    key, _ = make_csr(work, "www")
    path = {"key": key, "cert": server.root, "garbage": work / "notes.txt"}[kind]
    if kind == "garbage":
        path.write_text("hello\n")
    before = request_ids(server)
    result = server.cli("request", "submit", str(path), admin=False)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"certforge: {path} {says}"), lines
    assert request_ids(server) == before
