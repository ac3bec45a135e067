"""CRLs from the real server, checked with openssl and pkilint (issue 3).

A certificate is issued, revoked with ``certforge cert revoke``, and after ``certforge crl
publish`` the CRL at the certificate's own CRL distribution point makes ``openssl verify
-crl_check`` fail for it and pass for a certificate that is still good.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.revocation import (
    cdp_url,
    fetch,
    issue,
    openssl_verify_crl,
    pkilint,
    publish,
    save_crl,
    serial_of,
)
from tests.integration.server import CertforgeServer, run


def openssl_crl_text(work: Path, der: bytes, name: str) -> str:
    path = work / f"{name}.crl.der"
    path.write_bytes(der)
    return run("openssl", "crl", "-inform", "DER", "-in", str(path), "-noout", "-text").stdout


def test_revoked_fails_crl_check_and_good_passes(server: CertforgeServer, work: Path) -> None:
    bad_serial, bad = issue(server, work, "crl-revoked")
    _, good = issue(server, work, "crl-good")
    server.cli("cert", "revoke", bad_serial, "--reason", "keyCompromise", check=True)
    assert any(line.startswith("default crl ") for line in publish(server))

    der, headers = fetch(cdp_url(bad))
    crl_pem = save_crl(work, der, "default")

    assert headers["Content-Type"] == "application/pkix-crl"
    assert "max-age=" in headers["Cache-Control"]
    assert {"ETag", "Last-Modified", "Expires"} <= headers.keys()
    text = openssl_crl_text(work, der, "default")
    assert format(serial_of(bad), "X").zfill(2) in text.replace(":", "")
    assert "Key Compromise" in text
    revoked = openssl_verify_crl(server.root, bad, [crl_pem])
    assert revoked.returncode != 0
    assert "certificate revoked" in revoked.stdout + revoked.stderr
    passed = openssl_verify_crl(server.root, good, [crl_pem])
    assert passed.returncode == 0, passed.stdout + passed.stderr


def test_whole_chain_checks_with_the_root_crl(server: CertforgeServer, work: Path) -> None:
    _, good = issue(server, work, "crl-chain")
    publish(server)
    issuing_crl = save_crl(work, fetch(cdp_url(good))[0], "issuing")
    root_der, _ = fetch(server.http_url + "/crl/root.crl")
    root_crl = save_crl(work, root_der, "root")
    assert "Root CA" in openssl_crl_text(work, root_der, "root")

    checked = openssl_verify_crl(server.root, good, [issuing_crl, root_crl], check_all=True)

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_hold_then_release(server: CertforgeServer, work: Path) -> None:
    serial, held = issue(server, work, "crl-held")
    server.cli("cert", "revoke", serial, "--reason", "certificateHold", check=True)
    publish(server)
    der, _ = fetch(cdp_url(held))
    on_hold = x509.load_der_x509_crl(der)
    entry = on_hold.get_revoked_certificate_by_serial_number(serial_of(held))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.certificate_hold
    )
    assert openssl_verify_crl(server.root, held, [save_crl(work, der, "held")]).returncode != 0

    released = server.cli("cert", "release", serial, check=True)
    assert released.stdout.split() == [serial, "valid"]
    publish(server)
    der, _ = fetch(cdp_url(held))
    after = x509.load_der_x509_crl(der)

    assert after.get_revoked_certificate_by_serial_number(serial_of(held)) is None
    number = x509.CRLNumber
    assert (
        after.extensions.get_extension_for_class(number).value.crl_number
        > on_hold.extensions.get_extension_for_class(number).value.crl_number
    )
    checked = openssl_verify_crl(server.root, held, [save_crl(work, der, "released")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    history = server.cli("cert", "show", serial, check=True).stdout
    assert "event" in history and "revoked" in history and "unrevoked" in history


def test_crl_has_idp_matching_the_cdp_and_lints_clean(server: CertforgeServer, work: Path) -> None:
    serial, chain = issue(server, work, "crl-lint")
    server.cli(
        "cert",
        "revoke",
        serial,
        "--reason",
        "superseded",
        "--invalidity-date",
        "2026-01-02T03:04:05+00:00",
        check=True,
    )
    publish(server)
    der, _ = fetch(cdp_url(chain))
    crl = x509.load_der_x509_crl(der)
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert idp.value.full_name == [x509.UniformResourceIdentifier(cdp_url(chain))]
    path = work / "lint.crl"
    path.write_bytes(der)

    for profile in ("PKIX", "BR"):
        findings = pkilint("lint_crl", path, "-t", "CRL", "-p", profile)
        print(profile, *findings, sep="\n")
        assert [f for f in findings if "ERROR" in f or "FATAL" in f] == []


def test_publish_reports_each_ca_and_unknown_issuer_is_refused(server: CertforgeServer) -> None:
    body = json.loads(server.cli("crl", "publish", "--json", check=True).stdout)
    assert {c["issuer"] for c in body["crls"]} == {"default", "root"}
    refused = server.cli("crl", "publish", "--issuer", "nope")
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr


@pytest.mark.parametrize("path", ["/crl/nope.crl", "/crl/../root.crl", "/crl/default.crl.x"])
def test_unknown_crl_is_404(server: CertforgeServer, path: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(server.http_url + path, timeout=30)
    caught.value.close()
    assert caught.value.code == 404


def test_partitioned_crls(tmp_path: Path) -> None:
    """[crl] shards: a certificate names its partition's CRL, which openssl accepts as that
    certificate's CRL (its IDP matches the CDP) and which lists it once revoked."""
    server = CertforgeServer(tmp_path / "data", extra_config="[crl]\nshards = 4\n")
    server.start()
    try:
        serial, revoked = issue(server, tmp_path, "shard-revoked")
        _, good = issue(server, tmp_path, "shard-good")
        server.cli("cert", "revoke", serial, "--reason", "keyCompromise", check=True)
        lines = publish(server)
        assert {f"default/{k}" for k in range(4)} <= {line.split()[0] for line in lines}

        for chain, expect_ok in ((revoked, False), (good, True)):
            url = cdp_url(chain)
            shard = serial_of(chain) % 4
            assert url == f"{server.http_url}/crl/default/{shard}.crl"
            der, headers = fetch(url)
            assert headers["Content-Type"] == "application/pkix-crl"
            assert "Issuing Distribution Point" in openssl_crl_text(tmp_path, der, f"s{shard}")
            checked = openssl_verify_crl(server.root, chain, [save_crl(tmp_path, der, str(shard))])
            assert (checked.returncode == 0) is expect_ok, checked.stdout + checked.stderr
            path = tmp_path / f"shard{shard}.crl"
            path.write_bytes(der)
            findings = pkilint("lint_crl", path, "-t", "CRL", "-p", "BR")
            assert [f for f in findings if "ERROR" in f or "FATAL" in f] == []
        full, _ = fetch(f"{server.http_url}/crl/default.crl")
        assert x509.load_der_x509_crl(full).get_revoked_certificate_by_serial_number(
            serial_of(revoked)
        )
    finally:
        assert server.stop() == 0


def test_delta_crls(tmp_path: Path) -> None:
    """[crl] delta_interval_minutes: a delta CRL on top of the newest full CRL. openssl
    (-use_deltas) sees a revocation made after the base, and a release from hold
    (removeFromCRL) that the base alone does not show."""
    server = CertforgeServer(tmp_path / "data", extra_config="[crl]\ndelta_interval_minutes = 5\n")
    server.start()
    try:
        revoked_serial, revoked = issue(server, tmp_path, "delta-revoked")
        held_serial, held = issue(server, tmp_path, "delta-held")
        server.cli("cert", "revoke", held_serial, "--reason", "certificateHold", check=True)
        publish(server)
        base = save_crl(tmp_path, fetch(cdp_url(held))[0], "base")
        server.cli("cert", "revoke", revoked_serial, "--reason", "keyCompromise", check=True)
        server.cli("cert", "release", held_serial, check=True)
        lines = server.cli("crl", "publish", "--delta", check=True).stdout.splitlines()
        assert [line.split()[0] for line in lines] == ["default/delta"]
        leaf = x509.load_pem_x509_certificates(held.read_bytes())[0]
        freshest = leaf.extensions.get_extension_for_class(x509.FreshestCRL).value
        names = freshest[0].full_name
        assert names is not None
        delta_url = str(names[0].value)
        delta_der, headers = fetch(delta_url)
        assert headers["Content-Type"] == "application/pkix-crl"
        delta = save_crl(tmp_path, delta_der, "delta")
        text = openssl_crl_text(tmp_path, delta_der, "delta")
        assert "Delta CRL Indicator" in text and "Remove From CRL" in text

        def verify(chain: Path, crls: list[Path]) -> int:
            result = openssl_verify_crl(server.root, chain, crls, extra=["-use_deltas"])
            return result.returncode

        assert verify(revoked, [base]) == 0  # revoked after the base: only the delta knows
        assert verify(revoked, [base, delta]) != 0
        assert verify(held, [base]) != 0  # on hold in the base
        assert verify(held, [base, delta]) == 0  # released: removeFromCRL in the delta
        path = tmp_path / "delta.crl"
        path.write_bytes(delta_der)
        findings = pkilint("lint_crl", path, "-t", "CRL", "-p", "PKIX")
        print(*findings, sep="\n")
        assert [f for f in findings if "ERROR" in f or "FATAL" in f] == []
    finally:
        assert server.stop() == 0
