"""Checks every issued certificate must pass: openssl verify to the root, and pkilint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.openssl import verify

BIN = Path(sys.executable).parent


def check_issued(root: Path, chain: Path) -> None:
    assert "OK" in verify(root, chain, purpose="sslserver")
    leaf = chain.with_suffix(".leaf.pem")  # written by verify
    result = subprocess.run(
        [
            str(BIN / "lint_cabf_serverauth_cert"),
            "lint",
            "-t",
            "DV-FINAL-CERTIFICATE",
            "-s",
            "ERROR",
            str(leaf),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    findings = [line for line in result.stdout.splitlines() if line.strip()]
    assert findings == [], "\n".join(findings)
