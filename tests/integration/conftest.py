from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.server import CertforgeServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    """One shared server for the integration tests; SIGTERM at the end must exit 0."""
    srv = CertforgeServer(tmp_path_factory.mktemp("shared") / "data")
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path
