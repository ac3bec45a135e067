"""The README's five-minute tour, and the REST front end end to end, with openssl and curl."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

from tests.integration.openssl import make_csr, verify
from tests.integration.server import CertforgeServer, run


def test_tour_anonymous_submit_is_pending_then_approved(
    server: CertforgeServer, work: Path
) -> None:
    _, csr = make_csr(work, "tour")
    submitted = server.cli("request", "submit", str(csr), admin=False)
    assert submitted.returncode == 0, submitted.stderr
    request_id, status = submitted.stdout.split()
    assert status == "pending"

    waiting = server.cli("request", "get", request_id, "--out", str(work / "tour.pem"))
    assert waiting.returncode == 1
    assert "pending" in waiting.stderr

    pending = server.cli("request", "list", "--status", "pending", "--json")
    assert request_id in {r["id"] for r in json.loads(pending.stdout)["requests"]}

    approved = server.cli("request", "approve", request_id, check=True)
    assert approved.stdout.split() == [request_id, "issued"]
    server.cli("request", "get", request_id, "--out", str(work / "tour.pem"), check=True)
    assert "OK" in verify(server.root, work / "tour.pem", purpose="sslserver")


def test_denied_request_reports_denied(server: CertforgeServer, work: Path) -> None:
    _, csr = make_csr(work, "deny")
    request_id, status = server.cli("request", "submit", str(csr), check=True).stdout.split()
    assert status == "pending"
    denied = server.cli("request", "deny", request_id, "--reason", "not ours", check=True)
    assert denied.stdout.split() == [request_id, "denied"]
    got = server.cli("request", "get", request_id)
    assert got.returncode == 1
    assert "denied" in got.stderr
    again = server.cli("request", "approve", request_id)
    assert again.returncode == 1  # a decided request cannot be approved


def test_token_with_requester_role_gets_immediate_issuance(
    server: CertforgeServer, work: Path
) -> None:
    token = server.cli(
        "token", "create", "enroller", "--role", "requester", check=True
    ).stdout.strip()
    _, csr = make_csr(work, "fast", sans="DNS:fast.example.test,DNS:www.fast.example.test")
    result = server.curl(
        "-X",
        "POST",
        "-H",
        f"Authorization: Bearer {token}",
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        f"@{csr}",
        f"{server.url}/api/v1/requests",
        "-w",
        "\n%{http_code}",
    )
    body, code = result.stdout.decode().rsplit("\n", 1)
    assert code == "201", body
    issued = json.loads(body)
    assert issued["status"] == "issued"
    chain = work / "fast.pem"
    chain.write_text(issued["certificate"] + "".join(issued["chain"]))
    assert "OK" in verify(server.root, chain, purpose="sslserver")
    text = run("openssl", "x509", "-in", str(chain), "-noout", "-text").stdout
    assert "DNS:fast.example.test, DNS:www.fast.example.test" in text
    assert "Authority Key Identifier" in text
    assert f"{server.http_url}/crl/default.crl" in text
    assert f"OCSP - URI:{server.http_url}/ocsp" in text
    # The certificate is recorded, searchable by SAN, and the CLI can fetch it again.
    found = server.cli("cert", "list", "--json", check=True)
    serials = {c["serial"] for c in json.loads(found.stdout)["certificates"]}
    assert issued["serial"] in serials


def test_cli_submit_with_token_and_profile(server: CertforgeServer, work: Path) -> None:
    token = server.cli("token", "create", "clients", check=True).stdout.strip()
    _, csr = make_csr(work, "alice", subject="/CN=alice/O=Example", sans="")
    out = server.cli(
        "request",
        "submit",
        str(csr),
        "--profile",
        "tls-client",
        token=token,
        admin=False,
        check=True,
    )
    request_id, status = out.stdout.split()
    assert status == "issued"
    pem = server.cli("request", "get", request_id, check=True).stdout
    path = work / "alice.pem"
    path.write_text(pem)
    assert "OK" in verify(server.root, path, purpose="sslclient")


def test_https_listener_presents_full_chain(server: CertforgeServer) -> None:
    result = run(
        "openssl",
        "s_client",
        "-connect",
        f"127.0.0.1:{server.https_port}",
        "-CAfile",
        str(server.root),
        "-showcerts",
        input="",
    )
    assert "Verify return code: 0 (ok)" in result.stdout
    assert result.stdout.count("-----BEGIN CERTIFICATE-----") == 2


def test_healthz_and_metrics(server: CertforgeServer) -> None:
    assert server.curl(f"{server.url}/healthz").stdout == b"ok\n"
    metrics = server.curl(f"{server.url}/metrics").stdout.decode()
    assert "certforge_enrollments_total" in metrics
    assert "certforge_issuance_seconds_bucket" in metrics
    assert 'certforge_http_requests_total{frontend="rest"' in metrics


def test_ca_endpoints(server: CertforgeServer, work: Path) -> None:
    listing = json.loads(server.curl(f"{server.url}/api/v1/ca").stdout)
    assert listing["issuers"][0]["name"] == "default"
    assert listing["root"] == server.root.read_text()
    chain = server.curl(f"{server.url}/api/v1/ca/default/chain").stdout.decode()
    assert chain.count("BEGIN CERTIFICATE") == 2
    der = work / "issuer.cer"
    der.write_bytes(server.curl(f"{server.http_url}/ca/default.cer").stdout)
    subject = run("openssl", "x509", "-inform", "DER", "-in", str(der), "-noout", "-subject")
    assert "Issuing CA" in subject.stdout


def test_root_pem_and_token_files(server: CertforgeServer) -> None:
    assert (server.data_dir / "admin.token").stat().st_mode & 0o777 == 0o600
    ssl.create_default_context(cafile=str(server.root))  # parses as a trust anchor
