"""Fixtures for ACME interop: pebble-challtestsrv (DNS for the test names and TXT records for
dns-01) and a certforge server validating through it.

Every test name resolves to 127.0.0.1 through challtestsrv's DNS, which certforge uses as its
validation resolver (``[acme] resolvers``); http-01 and tls-alpn-01 connect to the ports the
clients listen on (``[acme] http01_port``, ``tlsalpn01_port``).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import CertforgeServer, free_port
from tests.interop.acme.challtestsrv import ChallTestSrv


@pytest.fixture(scope="session")
def challtestsrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallTestSrv]:
    assert shutil.which("pebble-challtestsrv"), "./dev test installs the Debian package pebble"
    srv = ChallTestSrv(tmp_path_factory.mktemp("challtestsrv"))
    srv.start()
    yield srv
    srv.stop()


def acme_server(base: Path, challtestsrv: ChallTestSrv, extra: str = "") -> CertforgeServer:
    http01, tlsalpn01 = free_port(), free_port()
    srv = CertforgeServer(
        base / "data",
        # pkilint's CA/B Forum linter refuses internal CRL/AIA names such as 127.0.0.1.
        public_http_url="http://pki.example.com",
        extra_config=f"""
[acme]
http01_port = {http01}
tlsalpn01_port = {tlsalpn01}
resolvers = ["127.0.0.1:{challtestsrv.dns_port}"]
validation_timeout_seconds = 5.0
{extra}
""",
    )
    srv.start()
    return srv


def http01_port(server: CertforgeServer) -> int:
    """The ``[acme] http01_port`` an ``acme_server`` validates http-01 on."""
    line = next(x for x in server.config_text().splitlines() if x.startswith("http01_port"))
    return int(line.split("=")[1])


@pytest.fixture(scope="module")
def acme(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    srv = acme_server(tmp_path_factory.mktemp("acme"), challtestsrv)
    yield srv
    assert srv.stop() == 0, srv.log_tail()
