"""A SoftHSM2 token of its own for a test run or a benchmark (Debian ``softhsm2``).

``softhsm_token(directory)`` writes a ``softhsm2.conf`` whose token directory is inside
``directory``, points ``SOFTHSM2_CONF`` at it and initialises one token. The module reads
``SOFTHSM2_CONF`` when it is first initialised in a process (python-pkcs11 keeps one module
object per path), so set it up before the first ``TokenPool`` of the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
LABEL = "test"
PIN = "1234"
SO_PIN = "5678"


@dataclass(frozen=True)
class SoftHSM:
    conf: Path
    tokens: Path  # the token directory: moving it away is "the token removed"
    module: str = MODULE
    label: str = LABEL
    pin: str = PIN

    def init_token(self, label: str, pin: str = PIN) -> None:
        command = ["softhsm2-util", "--init-token", "--free", "--label", label]
        subprocess.run(
            [*command, "--pin", pin, "--so-pin", SO_PIN],
            env={**os.environ, "SOFTHSM2_CONF": str(self.conf)},
            check=True,
            capture_output=True,
        )

    @contextmanager
    def removed(self) -> Iterator[None]:
        """The token gone while inside (its directory moved away), back afterwards."""
        away = self.tokens.with_name(self.tokens.name + ".away")
        shutil.move(self.tokens, away)
        try:
            yield
        finally:
            shutil.move(away, self.tokens)


def softhsm_token(directory: Path) -> SoftHSM:
    if shutil.which("softhsm2-util") is None or not Path(MODULE).exists():
        raise RuntimeError("SoftHSM2 is missing: apt-get install softhsm2 (./dev test does)")
    tokens = directory / "tokens"
    tokens.mkdir(mode=0o700)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    hsm = SoftHSM(conf=conf, tokens=tokens)
    hsm.init_token(LABEL)
    return hsm
