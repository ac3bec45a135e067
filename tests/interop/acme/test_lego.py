"""lego (Debian package) against certforge, unmodified: http-01, dns-01 (its ``exec`` provider
feeding TXT records to pebble-challtestsrv, a wildcard among the names) and tls-alpn-01,
with ECDSA and RSA keys; External Account Binding refused without credentials and accepted
with those of ``certforge acme eab create``."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.integration.server import CertforgeServer
from tests.interop.acme.challtestsrv import ChallTestSrv
from tests.interop.acme.client import Client, b64, eab_binding
from tests.interop.acme.conftest import acme_server
from tests.interop.acme.lint import check_issued

DNS_HOOK = """#!/bin/sh
# lego's exec provider: present|cleanup FQDN VALUE
case "$1" in
  present) curl -s -d "{{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}}" {management}/set-txt ;;
  cleanup) curl -s -d "{{\\"host\\":\\"$2\\"}}" {management}/clear-txt ;;
esac
"""


def port_of(acme: CertforgeServer, key: str) -> str:
    line = next(x for x in acme.config_text().splitlines() if x.startswith(key))
    return line.split("=")[1].strip()


def lego(
    acme: CertforgeServer, work: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    assert shutil.which("lego"), "./dev test installs the Debian package lego"
    cmd = [
        "lego",
        "--server",
        f"{acme.url}/acme/directory",
        "--accept-tos",
        "--email",
        "admin@example.com",
        "--path",
        str(work / "lego"),
        *args,
    ]
    full_env = dict(os.environ, LEGO_CA_CERTIFICATES=str(acme.root), **(env or {}))
    return subprocess.run(
        cmd, capture_output=True, text=True, env=full_env, timeout=120, check=False
    )


def issued(work: Path, name: str) -> x509.Certificate:
    path = work / "lego" / "certificates" / f"{name.replace('*', '_')}.crt"
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.mark.parametrize(
    ("challenge", "key_type", "names"),
    [
        pytest.param(
            "http", "ec256", ["h1.lego.example.com", "h2.lego.example.com"], id="http-01/ec256"
        ),
        pytest.param("tls", "rsa2048", ["t.lego.example.com"], id="tls-alpn-01/rsa2048"),
        pytest.param(
            "dns",
            "rsa2048",
            ["*.w.lego.example.com", "w.lego.example.com"],
            id="dns-01/rsa2048-wildcard",
        ),
        pytest.param("dns", "ec384", ["d.lego.example.com"], id="dns-01/ec384"),
    ],
)
def test_lego_obtains(
    acme: CertforgeServer,
    challtestsrv: ChallTestSrv,
    tmp_path: Path,
    challenge: str,
    key_type: str,
    names: list[str],
) -> None:
    args: list[str] = ["-k", key_type]
    env: dict[str, str] = {}
    if challenge == "http":
        args += ["--http", "--http.port", f"127.0.0.1:{port_of(acme, 'http01_port')}"]
    elif challenge == "tls":
        args += ["--tls", "--tls.port", f"127.0.0.1:{port_of(acme, 'tlsalpn01_port')}"]
    else:
        hook = tmp_path / "dns-hook.sh"
        hook.write_text(DNS_HOOK.format(management=challtestsrv.management))
        hook.chmod(0o755)
        args += ["--dns", "exec", "--dns.disable-cp"]
        env = {"EXEC_PATH": str(hook), "EXEC_SEQUENCE_INTERVAL": "1", "EXEC_POLLING_INTERVAL": "1"}
    for name in names:
        args += ["-d", name]
    result = lego(acme, tmp_path, *args, "run", env=env)
    assert result.returncode == 0, result.stderr[-3000:] + acme.log_tail()
    cert = issued(tmp_path, names[0])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    expected = rsa.RSAPublicKey if key_type.startswith("rsa") else ec.EllipticCurvePublicKey
    assert isinstance(cert.public_key(), expected)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(
        (tmp_path / "lego" / "certificates" / f"{names[0].replace('*', '_')}.crt").read_bytes()
    )
    check_issued(acme.root, chain)


@pytest.fixture(scope="module")
def eab_acme(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    srv = acme_server(tmp_path_factory.mktemp("eab"), challtestsrv, "eab_required = true")
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def test_eab_required(eab_acme: CertforgeServer, tmp_path: Path) -> None:
    http = ["--http", "--http.port", f"127.0.0.1:{port_of(eab_acme, 'http01_port')}"]
    refused = lego(eab_acme, tmp_path / "without", *http, "-d", "e.lego.example.com", "run")
    assert refused.returncode != 0
    # lego reads meta.externalAccountRequired and stops; the server's own refusal of a
    # newAccount without a binding is tested with a raw client (test_acme_requests.py).
    assert "External Account Binding" in refused.stderr

    out = eab_acme.cli("acme", "eab", "create", check=True).stdout.split()
    assert len(out) == 2, out
    kid, hmac_key = out
    wrong = lego(
        eab_acme,
        tmp_path / "wrong",
        "--eab",
        "--kid",
        kid,
        "--hmac",
        "A" * 43,
        *http,
        "-d",
        "e.lego.example.com",
        "run",
    )
    assert wrong.returncode != 0
    accepted = lego(
        eab_acme,
        tmp_path / "with",
        "--eab",
        "--kid",
        kid,
        "--hmac",
        hmac_key,
        *http,
        "-d",
        "e.lego.example.com",
        "run",
    )
    assert accepted.returncode == 0, accepted.stderr[-3000:]
    assert issued(tmp_path / "with", "e.lego.example.com").serial_number > 0
    # One credential binds one account: a second key cannot use it again.
    again = lego(
        eab_acme,
        tmp_path / "again",
        "--eab",
        "--kid",
        kid,
        "--hmac",
        hmac_key,
        *http,
        "-d",
        "e.lego.example.com",
        "run",
    )
    assert again.returncode != 0


def test_eab_refused_and_accepted_raw(eab_acme: CertforgeServer) -> None:
    """The server's own refusal (lego stops before asking) and a raw binding."""
    c = Client(f"{eab_acme.url}/acme/directory", eab_acme.ssl_context())
    assert c.directory["meta"]["externalAccountRequired"] is True
    assert c.register().problem == "externalAccountRequired"
    kid, hmac_key = eab_acme.cli("acme", "eab", "create", check=True).stdout.split()
    url = c.directory["newAccount"]
    forged = c.register(externalAccountBinding=eab_binding(kid, b64(b"x" * 32), c.key, url))
    assert forged.problem == "unauthorized"
    unknown = c.register(externalAccountBinding=eab_binding("kid-nope", hmac_key, c.key, url))
    assert unknown.problem == "unauthorized"
    bound = c.register(externalAccountBinding=eab_binding(kid, hmac_key, c.key, url))
    assert bound.status == 201, bound.body
    other = Client(f"{eab_acme.url}/acme/directory", eab_acme.ssl_context())
    reused = other.register(externalAccountBinding=eab_binding(kid, hmac_key, other.key, url))
    assert reused.problem == "unauthorized"
