"""certbot (latest from PyPI, the ``test`` extra) against certforge, unmodified: it registers,
obtains a certificate for two names over http-01 (its standalone server on the port certforge
validates), renews it with --force-renewal, and revokes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography import x509

from tests.integration.server import CertforgeServer
from tests.interop.acme.conftest import http01_port
from tests.interop.acme.lint import check_issued

CERTBOT = str(Path(sys.executable).parent / "certbot")


def certbot(acme: CertforgeServer, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, REQUESTS_CA_BUNDLE=str(acme.root))
    cmd = [
        CERTBOT,
        *args,
        "--server",
        f"{acme.url}/acme/directory",
        "--config-dir",
        str(work / "conf"),
        "--work-dir",
        str(work / "work"),
        "--logs-dir",
        str(work / "logs"),
        "--non-interactive",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert result.returncode == 0, result.stdout + result.stderr + acme.log_tail()
    return result


def test_certbot_obtains_renews_and_revokes(acme: CertforgeServer, tmp_path: Path) -> None:
    work = tmp_path
    names = ["www.certbot.example.com", "api.certbot.example.com"]
    certbot(
        acme,
        work,
        "certonly",
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        str(http01_port(acme)),
        "--agree-tos",
        "--register-unsafely-without-email",
        *(arg for name in names for arg in ("-d", name)),
    )
    live = work / "conf" / "live" / names[0]
    first = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    sans = first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    check_issued(acme.root, live / "fullchain.pem")

    certbot(acme, work, "renew", "--force-renewal", "--no-random-sleep-on-renew")
    renewed = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    assert renewed.serial_number != first.serial_number

    certbot(
        acme,
        work,
        "revoke",
        "--cert-name",
        names[0],
        "--reason",
        "keycompromise",
        "--no-delete-after-revoke",
    )
    listed = acme.cli("cert", "list", "--status", "revoked", check=True).stdout
    assert format(renewed.serial_number, "x") in listed.lower()
    assert format(first.serial_number, "x") not in listed.lower()
