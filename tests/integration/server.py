"""A real ``certforge serve`` as a subprocess on free ports (modelled on certbot-ci's
ACMEServer): started with a temporary data directory, ready when ``/healthz`` answers,
stopped with SIGTERM (and it must exit 0)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CERTFORGE = str(BIN / "certforge")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CertforgeServer:
    data_dir: Path
    extra_config: str = ""
    public_http_url: str = ""  # default: this server's HTTP listener
    https_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the server's environment

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def root(self) -> Path:
        return self.data_dir / "root.pem"

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def config_text(self) -> str:
        return f"""
[server]
data_dir = "{self.data_dir}"
https_listen = "127.0.0.1:{self.https_port}"
http_listen = "127.0.0.1:{self.http_port}"
public_https_url = "{self.url}"
public_http_url = "{self.public_http_url or self.http_url}"
shutdown_timeout = 5.0
{self.extra_config}
"""

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir.parent / f"{self.data_dir.name}.toml"
        config.write_text(self.config_text())
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [CERTFORGE, "serve", "--config", str(config)],
                stdout=log,
                stderr=log,
                env={**os.environ, **self.env},
            )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"certforge exited with {self.proc.returncode}:\n" + self.log_tail()
                )
            if self.root.exists():
                try:
                    with urllib.request.urlopen(
                        f"{self.url}/healthz",
                        timeout=2,
                        context=self.ssl_context(),
                    ) as resp:
                        if resp.status == 200:
                            return
                except OSError:
                    pass
            time.sleep(0.1)  # polling a subprocess's readiness; there is no event to await
        raise RuntimeError("certforge did not become ready:\n" + self.log_tail())

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root))

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc = None

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def workers(self) -> list[int]:
        """The pids of the server's worker processes (``[server] workers`` > 1)."""
        assert self.proc is not None
        pid = self.proc.pid
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]

    def kill_all(self) -> None:
        """SIGKILL to the parent and every worker at once, as a machine losing power would."""
        assert self.proc is not None
        for pid in [self.proc.pid, *self.workers()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cli(
        self,
        *args: str,
        token: str | None = None,
        admin: bool = True,
        check: bool = False,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``certforge`` command line against this server."""
        cmd = [CERTFORGE, *args, "--data-dir", str(self.data_dir), "--url", self.url]
        if token is not None:
            cmd += ["--token", token]
        env = dict(os.environ)
        result = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=60, check=False, cwd=cwd
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{cmd} -> {result.returncode}: {result.stderr}")
        return result

    def curl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["curl", "-sS", "--cacert", str(self.root), *args],
            capture_output=True,
            timeout=60,
            check=False,
        )


def run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, **kw)
    if result.returncode != 0:
        raise AssertionError(f"{cmd} failed ({result.returncode}):\n{result.stderr}")
    return result
