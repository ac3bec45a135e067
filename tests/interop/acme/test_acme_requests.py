"""The ACME resources driven by a raw client against the real server: every JWS defect and
bad input gets its RFC 8555 problem type (never a 500) and records nothing; accounts (EdDSA,
RS256, ES384 keys, update, key rollover, deactivation); orders with IP identifiers and
wildcards; finalize; certificate download; revokeCert; ARI (RFC 9773) and "replaces";
profiles; manual approval; rate limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.integration.server import CertforgeServer
from tests.interop.acme.alpn import alpn_certificate, tls_alpn_responder
from tests.interop.acme.challtestsrv import ChallTestSrv
from tests.interop.acme.client import Client, b64, jwk_of, jws, make_csr
from tests.interop.acme.conftest import acme_server, http01_port
from tests.interop.acme.responder import http01_responder

PROFILES = """
[profiles.manual]
approval = "manual"

[profiles.corp]
dns_suffixes = ["corp.example.com"]
"""


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    srv = acme_server(tmp_path_factory.mktemp("acme-raw"), challtestsrv, PROFILES)
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def client_for(server: CertforgeServer, **kw: Any) -> Client:
    return Client(f"{server.url}/acme/directory", server.ssl_context(), **kw)


@pytest.fixture
def client(server: CertforgeServer) -> Client:
    c = client_for(server)
    assert c.register().status == 201
    return c


def validate_all(server: CertforgeServer, client: Client, order: dict[str, Any]) -> None:
    answers: dict[str, str] = {}
    with http01_responder(http01_port(server), answers):
        for url in order["authorizations"]:
            authz = client.post(url).json()
            if authz["status"] == "valid":
                continue
            challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
            answers[challenge["token"]] = client.key_authorization(challenge["token"])
            assert client.post(challenge["url"], {}).status == 200
            assert client.poll(url, ("valid", "invalid"))["status"] == "valid"


def issue(
    server: CertforgeServer, client: Client, names: list[str], **extra: Any
) -> tuple[str, dict[str, Any], bytes]:
    resp = client.new_order(*names, **extra)
    assert resp.status == 201, resp.body
    order_url, order = resp.headers["Location"], resp.json()
    validate_all(server, client, order)
    assert client.poll(order_url, ("ready", "invalid"))["status"] == "ready"
    csr, _ = make_csr(names)
    done = client.post(order["finalize"], {"csr": b64(csr)})
    assert done.status == 200, done.body
    body = client.poll(order_url, ("valid", "invalid"))
    assert body["status"] == "valid", body
    cert = client.post(body["certificate"])
    assert cert.headers["Content-Type"].startswith("application/pem-certificate-chain")
    return order_url, body, cert.body


# --------------------------------------------------------------------- directory, nonces
def test_directory_and_new_nonce(server: CertforgeServer) -> None:
    c = client_for(server)
    meta = c.directory["meta"]
    assert meta["externalAccountRequired"] is False
    assert {"tls-server", "manual", "corp"} <= set(meta["profiles"])
    assert c.directory["renewalInfo"].endswith("/acme/renewal-info")
    head = c.request("HEAD", c.directory["newNonce"])
    get = c.request("GET", c.directory["newNonce"])
    assert (head.status, get.status) == (200, 204)
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    # Stated, so that clients which close a connection after a HEAD answer of unknown length
    # (aiohttp's) keep it: one TLS handshake saved per order.
    assert head.headers["Content-Length"] == "0"
    assert get.headers["Cache-Control"] == "no-store"
    assert 'rel="index"' in get.headers["Link"]


# --------------------------------------------------------------------------- JWS defects
def _defect(c: Client, name: str) -> Any:
    url = c.directory["newAccount"]
    payload = json.dumps({"termsOfServiceAgreed": True}).encode()
    protected = {"nonce": c.nonce(), "url": url, "jwk": _jwk(c)}
    match name:
        case "wrong_content_type":
            return c.request(
                "POST", url, json.dumps(jws(c.key, protected, payload)).encode(), "application/json"
            )
        case "not_json":
            return c.request("POST", url, b"{not json")
        case "bad_signature":
            body = jws(c.key, protected, payload)
            body["signature"] = b64(b"\x01" * 64)
            return c.request("POST", url, json.dumps(body).encode())
        case "wrong_url":
            return c.post(url, {"termsOfServiceAgreed": True}, sign_url=c.directory["newOrder"])
        case "unknown_nonce":
            return c.post(url, {"termsOfServiceAgreed": True}, nonce="bm90LWlzc3VlZA")
        case "reused_nonce":
            nonce = c.nonce()
            first = c.post(c.directory["newOrder"], {}, nonce=nonce, use_jwk=True)
            assert first.problem == "malformed"  # refused before the nonce is consumed
            c.post(url, {"onlyReturnExisting": True}, nonce=nonce)
            return c.post(url, {"termsOfServiceAgreed": True}, nonce=nonce)
        case "alg_none":
            return c.post(url, {"termsOfServiceAgreed": True}, alg="none")
        case "alg_hs256":
            return c.post(url, {"termsOfServiceAgreed": True}, alg="HS256")
        case "alg_not_the_keys":
            return c.post(url, {"termsOfServiceAgreed": True}, alg="RS256")
        case "jwk_and_kid":
            return c.post(
                url, {"termsOfServiceAgreed": True}, header={"kid": f"{c.directory['newAccount']}"}
            )
        case "unprotected_header":
            unprotected: dict[str, Any] = dict(jws(c.key, protected, payload))
            unprotected["header"] = {"kid": "x"}
            return c.request("POST", url, json.dumps(unprotected).encode())
        case "oversized_body":
            return c.post(url, {"termsOfServiceAgreed": True, "pad": "x" * 70000})
        case "kid_on_new_account":
            c.kid = f"{c.directory['newAccount'].rsplit('/', 1)[0]}/acct/nope"
            return c.post(url, {"termsOfServiceAgreed": True}, use_jwk=False)
        case _:
            raise AssertionError(name)


def _jwk(c: Client) -> dict[str, str]:
    return jwk_of(c.key)


@pytest.mark.parametrize(
    ("defect", "status", "problem"),
    [
        pytest.param("wrong_content_type", 415, "malformed", id="jws/wrong_content_type"),
        pytest.param("not_json", 400, "malformed", id="jws/not_json"),
        pytest.param("bad_signature", 400, "malformed", id="jws/bad_signature"),
        pytest.param("wrong_url", 403, "unauthorized", id="jws/wrong_url"),
        pytest.param("unknown_nonce", 400, "badNonce", id="jws/unknown_nonce"),
        pytest.param("reused_nonce", 400, "badNonce", id="jws/reused_nonce"),
        pytest.param("alg_none", 400, "badSignatureAlgorithm", id="jws/alg_none"),
        pytest.param("alg_hs256", 400, "badSignatureAlgorithm", id="jws/alg_mac"),
        pytest.param("alg_not_the_keys", 400, "badSignatureAlgorithm", id="jws/alg_mismatch"),
        pytest.param("jwk_and_kid", 400, "malformed", id="jws/jwk_and_kid"),
        pytest.param("unprotected_header", 400, "malformed", id="jws/unprotected_header"),
        pytest.param("oversized_body", 413, "malformed", id="jws/oversized_body"),
        pytest.param("kid_on_new_account", 400, "malformed", id="jws/kid_on_new_account"),
    ],
)
def test_jws_defect_is_refused_and_records_nothing(
    server: CertforgeServer, defect: str, status: int, problem: str
) -> None:
    c = client_for(server)
    resp = _defect(c, defect)
    assert (resp.status, resp.problem) == (status, problem), resp.body
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    assert resp.headers.get("Replay-Nonce")
    if problem == "badSignatureAlgorithm":
        assert "ES256" in resp.json()["algorithms"]
    c.kid = None
    exists = c.post(c.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert exists.problem == "accountDoesNotExist"


def test_unknown_kid_is_account_does_not_exist(server: CertforgeServer) -> None:
    c = client_for(server)
    c.kid = c.directory["newAccount"].replace("new-account", "acct/unknown")
    resp = c.new_order("x.example.com")
    assert (resp.status, resp.problem) == (400, "accountDoesNotExist")


def test_jwk_where_kid_is_required(server: CertforgeServer, client: Client) -> None:
    resp = client.post(client.directory["newOrder"], {"identifiers": []}, use_jwk=True)
    assert resp.problem == "malformed"


# ------------------------------------------------------------------------------ accounts
@pytest.mark.parametrize(
    "key",
    [
        pytest.param(lambda: ed25519.Ed25519PrivateKey.generate(), id="EdDSA"),
        pytest.param(lambda: rsa.generate_private_key(65537, 2048), id="RS256"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="ES384"),
    ],
)
def test_account_key_algorithms(server: CertforgeServer, key: Any) -> None:
    c = client_for(server, key=key())
    created = c.register(contact=["mailto:ops@example.com"])
    assert created.status == 201, created.body
    assert created.json()["status"] == "valid"
    c.kid = None
    again = c.register()
    assert (again.status, again.headers["Location"]) == (200, created.headers["Location"])
    order = c.new_order("algs.example.com")
    assert order.status == 201, order.body


def test_short_rsa_account_key_is_bad_public_key(server: CertforgeServer) -> None:
    c = client_for(server, key=rsa.generate_private_key(65537, 1024))
    assert c.register().problem == "badPublicKey"


def test_contact_must_be_mailto(server: CertforgeServer) -> None:
    c = client_for(server)
    assert c.register(contact=["tel:+1555"]).problem == "unsupportedContact"
    assert c.register(contact=["mailto:not-an-address"]).problem == "invalidContact"


def test_account_update_rollover_and_deactivation(server: CertforgeServer, client: Client) -> None:
    assert client.kid is not None
    updated = client.post(client.kid, {"contact": ["mailto:new@example.com"]})
    assert updated.json()["contact"] == ["mailto:new@example.com"]
    # RFC 8555 §7.3.5: key rollover.
    new_key = ec.generate_private_key(ec.SECP256R1())
    url = client.directory["keyChange"]
    inner = jws(
        new_key,
        {"jwk": jwk_of(new_key), "url": url},
        json.dumps({"account": client.kid, "oldKey": jwk_of(client.key)}).encode(),
    )
    rolled = client.post(url, inner)
    assert rolled.status == 200, rolled.body
    old_key, client.key = client.key, new_key
    assert client.post(client.kid).status == 200
    stale = client.post(client.kid, key=old_key)
    assert stale.problem == "malformed"  # the old key no longer verifies
    # RFC 8555 §7.3.6: deactivation; later requests are unauthorized.
    gone = client.post(client.kid, {"status": "deactivated"})
    assert gone.json()["status"] == "deactivated"
    assert client.new_order("after.example.com").problem == "unauthorized"


# -------------------------------------------------------------------------------- orders
def test_order_flow_with_ip_identifier(server: CertforgeServer, client: Client) -> None:
    order_url, _, pem = issue(server, client, ["ip.example.com", "127.0.0.1"])
    cert = x509.load_pem_x509_certificate(pem)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert pem.count(b"BEGIN CERTIFICATE") == 2  # leaf and issuing CA
    assert client.kid is not None
    listed = client.post(client.kid + "/orders").json()["orders"]
    assert order_url in listed
    # A second order for the same names reuses the valid authorizations.
    again = client.new_order("ip.example.com", "127.0.0.1").json()
    assert again["status"] == "ready"


def test_wildcard_offers_only_dns01(client: Client) -> None:
    order = client.new_order("*.wild.example.com").json()
    authz = client.post(order["authorizations"][0]).json()
    assert authz["wildcard"] is True
    assert authz["identifier"]["value"] == "wild.example.com"
    assert [c["type"] for c in authz["challenges"]] == ["dns-01"]


def test_ip_identifier_is_not_offered_dns01(client: Client) -> None:
    order = client.new_order("192.0.2.7").json()
    authz = client.post(order["authorizations"][0]).json()
    assert {c["type"] for c in authz["challenges"]} == {"http-01", "tls-alpn-01"}


def test_failed_validation_makes_the_order_invalid(server: CertforgeServer, client: Client) -> None:
    resp = client.new_order("fails.example.com")
    order_url, order = resp.headers["Location"], resp.json()
    authz = client.post(order["authorizations"][0]).json()
    challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
    with http01_responder(http01_port(server), {challenge["token"]: "wrong"}):
        answered = client.post(challenge["url"], {}).json()
    # A quick validation is already in the response to the challenge.
    assert answered["status"] == "invalid", answered
    assert answered["error"]["type"].endswith("incorrectResponse")
    assert client.post(order["authorizations"][0]).json()["status"] == "invalid"
    body = client.poll(order_url, ("invalid",))
    assert body["error"]["type"].endswith("incorrectResponse")
    assert body["error"]["subproblems"][0]["identifier"]["value"] == "fails.example.com"


@pytest.mark.parametrize(
    ("identifiers", "extra", "problem"),
    [
        pytest.param(
            [{"type": "email", "value": "a@example.com"}],
            {},
            "unsupportedIdentifier",
            id="identifier/email",
        ),
        pytest.param(
            [{"type": "dns", "value": "bad_name!"}],
            {},
            "rejectedIdentifier",
            id="identifier/syntax",
        ),
        pytest.param(
            [{"type": "dns", "value": "a.*.example.com"}],
            {},
            "rejectedIdentifier",
            id="identifier/inner_wildcard",
        ),
        pytest.param(
            [{"type": "ip", "value": "300.1.1.1"}], {}, "malformed", id="identifier/bad_ip"
        ),
        pytest.param([], {}, "malformed", id="identifier/none"),
        pytest.param(
            [{"type": "dns", "value": "www.other.example"}],
            {"profile": "corp"},
            "rejectedIdentifier",
            id="policy/outside_suffix",
        ),
        pytest.param(
            [{"type": "dns", "value": "a.example.com"}],
            {"profile": "nope"},
            "invalidProfile",
            id="profile/unknown",
        ),
        pytest.param(
            [{"type": "dns", "value": "a.example.com"}],
            {"notAfter": "2030-01-01T00:00:00Z"},
            "malformed",
            id="order/not_after",
        ),
    ],
)
def test_new_order_bad_input(
    client: Client, identifiers: list[dict[str, str]], extra: dict[str, Any], problem: str
) -> None:
    resp = client.post(client.directory["newOrder"], {"identifiers": identifiers, **extra})
    assert resp.problem == problem, resp.body
    assert resp.status < 500


def test_policy_refusal_lists_subproblems(client: Client) -> None:
    resp = client.new_order(
        "a.other.example", "b.other.example", "ok.corp.example.com", profile="corp"
    )
    body = resp.json()
    assert resp.problem == "rejectedIdentifier"
    assert [s["identifier"]["value"] for s in body["subproblems"]] == [
        "a.other.example",
        "b.other.example",
    ]


def test_finalize_defects(server: CertforgeServer, client: Client) -> None:
    resp = client.new_order("fin.example.com")
    order_url, order = resp.headers["Location"], resp.json()
    early = client.post(order["finalize"], {"csr": b64(make_csr(["fin.example.com"])[0])})
    assert (early.status, early.problem) == (403, "orderNotReady")
    validate_all(server, client, order)
    mismatch = client.post(
        order["finalize"], {"csr": b64(make_csr(["fin.example.com", "x.example.com"])[0])}
    )
    assert mismatch.problem == "badCSR"
    garbage = client.post(order["finalize"], {"csr": b64(b"\x30\x03\x02\x01\x00")})
    assert garbage.problem == "badCSR"
    short = client.post(
        order["finalize"],
        {"csr": b64(make_csr(["fin.example.com"], rsa.generate_private_key(65537, 1024))[0])},
    )
    assert short.problem == "badPublicKey"
    # Nothing was recorded half-way: the order is still ready and finalizes.
    assert client.post(order_url).json()["status"] == "ready"
    ok = client.post(order["finalize"], {"csr": b64(make_csr(["fin.example.com"])[0])})
    assert ok.json()["status"] == "valid"


def test_finalize_refuses_the_account_key_before_and_after_rollover(
    server: CertforgeServer, client: Client
) -> None:
    """RFC 8555 §11.1: no CSR "for any known account key pair": the account's current key,
    and the one it rolled over from. (The other account-key cases are in test_account_keys.py,
    with certbot's ``acme`` library, which has no key rollover.)"""
    old_key, new_key = client.key, ec.generate_private_key(ec.SECP256R1())
    url = client.directory["keyChange"]
    inner = jws(
        new_key,
        {"jwk": jwk_of(new_key), "url": url},
        json.dumps({"account": client.kid, "oldKey": jwk_of(old_key)}).encode(),
    )
    assert client.post(url, inner).status == 200
    client.key = new_key
    resp = client.new_order("rolled.example.com")
    order_url, order = resp.headers["Location"], resp.json()
    validate_all(server, client, order)
    for key in (new_key, old_key):
        csr, _ = make_csr(["rolled.example.com"], key)
        refused = client.post(order["finalize"], {"csr": b64(csr)})
        assert (refused.status, refused.problem) == (400, "badCSR")
    assert client.post(order_url).json()["status"] == "ready"
    ok = client.post(order["finalize"], {"csr": b64(make_csr(["rolled.example.com"])[0])})
    assert ok.json()["status"] == "valid"


def test_another_accounts_order_is_unauthorized(server: CertforgeServer, client: Client) -> None:
    order_url = client.new_order("mine.example.com").headers["Location"]
    other = client_for(server)
    other.register()
    assert other.post(order_url).problem == "unauthorized"


# -------------------------------------------------------------------- manual approval
def test_manual_approval_keeps_the_order_processing(
    server: CertforgeServer, client: Client
) -> None:
    resp = client.new_order("held.example.com", profile="manual")
    order_url, order = resp.headers["Location"], resp.json()
    assert order["profile"] == "manual"
    validate_all(server, client, order)
    done = client.post(order["finalize"], {"csr": b64(make_csr(["held.example.com"])[0])})
    assert done.json()["status"] == "processing"
    assert int(done.headers["Retry-After"]) > 0
    pending = server.cli("request", "list", "--status", "pending", "--json", check=True).stdout
    request_id = next(
        r["id"] for r in json.loads(pending)["requests"] if "held.example.com" in str(r)
    )
    server.cli("request", "approve", request_id, check=True)
    assert client.post(order_url).json()["status"] == "valid"


def test_manual_denial_makes_the_order_invalid(server: CertforgeServer, client: Client) -> None:
    resp = client.new_order("denied.example.com", profile="manual")
    order_url, order = resp.headers["Location"], resp.json()
    validate_all(server, client, order)
    client.post(order["finalize"], {"csr": b64(make_csr(["denied.example.com"])[0])})
    pending = server.cli("request", "list", "--status", "pending", "--json", check=True).stdout
    request_id = next(
        r["id"] for r in json.loads(pending)["requests"] if "denied.example.com" in str(r)
    )
    server.cli("request", "deny", request_id, "--reason", "not today", check=True)
    body = client.post(order_url).json()
    assert body["status"] == "invalid"
    assert body["error"]["detail"] == "not today"


# ---------------------------------------------------------------------------- revocation
def test_revoke_cert(server: CertforgeServer, client: Client) -> None:
    names = ["rev.example.com"]
    resp = client.new_order(*names)
    order_url, order = resp.headers["Location"], resp.json()
    validate_all(server, client, order)
    csr, cert_key = make_csr(names)
    client.post(order["finalize"], {"csr": b64(csr)})
    body = client.poll(order_url, ("valid",))
    pem = client.post(body["certificate"]).body
    der = x509.load_pem_x509_certificate(pem).public_bytes(
        __import__(
            "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
        ).Encoding.DER
    )
    url = client.directory["revokeCert"]
    stranger = client_for(server)
    stranger.register()
    assert stranger.post(url, {"certificate": b64(der)}).problem == "unauthorized"
    assert client.post(url, {"certificate": b64(der), "reason": 6}).problem == "badRevocationReason"
    assert client.post(url, {"certificate": b64(b"junk")}).status == 404
    # RFC 8555 §7.6: signed by the certificate's own key, with "jwk".
    by_key = client.post(url, {"certificate": b64(der), "reason": 1}, key=cert_key, use_jwk=True)
    assert by_key.status == 200, by_key.body
    assert client.post(url, {"certificate": b64(der)}).problem == "alreadyRevoked"
    serial = format(x509.load_der_x509_certificate(der).serial_number, "x")
    shown = server.cli("cert", "list", "--status", "revoked", check=True).stdout
    assert serial in shown.lower()


# ---------------------------------------------------------------------------------- ARI
def _cert_id(pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(pem)
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
    return f"{b64(aki.key_identifier or b'')}.{b64(serial)}"


def test_renewal_info_and_replaces(server: CertforgeServer, client: Client) -> None:
    _, _, pem = issue(server, client, ["ari.example.com"])
    cert_id = _cert_id(pem)
    info = client.request("GET", f"{client.directory['renewalInfo']}/{cert_id}")
    assert info.status == 200 and int(info.headers["Retry-After"]) > 0
    window = info.json()["suggestedWindow"]
    start = datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.not_valid_before_utc < start < cert.not_valid_after_utc
    # An administrator marks it (by serial) for renewal now: the window moves to the past.
    server.cli("acme", "renew", "--serial", format(cert.serial_number, "x"), check=True)
    marked = client.request("GET", f"{client.directory['renewalInfo']}/{cert_id}").json()
    end = datetime.fromisoformat(marked["suggestedWindow"]["end"].replace("Z", "+00:00"))
    assert end < datetime.now(UTC)
    # RFC 9773 §5: an order naming the certificate it replaces is accepted, once.
    _, order, _ = issue(server, client, ["ari.example.com"], replaces=cert_id)
    assert order["replaces"] == cert_id
    again = client.new_order("ari.example.com", replaces=cert_id)
    assert (again.status, again.problem) == (409, "alreadyReplaced")
    stranger = client_for(server)
    stranger.register()
    _, _, other_pem = issue(server, client, ["ari2.example.com"])
    assert (
        stranger.new_order("ari2.example.com", replaces=_cert_id(other_pem)).problem
        == "unauthorized"
    )
    unknown = client.request("GET", f"{client.directory['renewalInfo']}/AAAA.AQ")
    assert unknown.status == 404


def test_renewal_marks_by_key_and_issuer(server: CertforgeServer, client: Client) -> None:
    _, _, pem = issue(server, client, ["mark.example.com"])
    url = f"{client.directory['renewalInfo']}/{_cert_id(pem)}"
    before = client.request("GET", url).json()["suggestedWindow"]["end"]
    assert datetime.fromisoformat(before.replace("Z", "+00:00")) > datetime.now(UTC)
    server.cli("acme", "renew", "--issuer", "default", check=True)
    after = client.request("GET", url).json()["suggestedWindow"]["end"]
    assert datetime.fromisoformat(after.replace("Z", "+00:00")) < datetime.now(UTC)
    bad = server.cli("acme", "renew", "--issuer", "nope")
    assert bad.returncode == 1


# ---------------------------------------------------------------------- rate limits
@pytest.fixture(scope="module")
def limited(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    srv = acme_server(
        tmp_path_factory.mktemp("limited"),
        challtestsrv,
        "orders_per_account_per_hour = 2\norders_per_identifier_per_hour = 1\n"
        'accounts_per_address_per_hour = 2\nterms_of_service = "https://example.com/tos"',
    )
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def test_rate_limit_and_terms(limited: CertforgeServer, tmp_path: Path) -> None:
    c = client_for(limited)
    assert c.directory["meta"]["termsOfService"] == "https://example.com/tos"
    refused = c.post(c.directory["newAccount"], {}, use_jwk=True)
    assert refused.problem == "userActionRequired"
    assert c.register().status == 201
    assert c.new_order("r1.example.com").status == 201
    assert c.new_order("r2.example.com").status == 201
    third = c.new_order("r3.example.com")
    assert (third.status, third.problem) == (429, "rateLimited")
    assert 0 < int(third.headers["Retry-After"]) <= 3600
    other = client_for(limited)
    assert other.register().status == 201
    same_name = other.new_order("r1.example.com")
    assert (same_name.status, same_name.problem) == (429, "rateLimited")
    assert other.new_order("r4.example.com").status == 201
    third_account = client_for(limited)
    assert third_account.register().problem == "rateLimited"


# ------------------------------------------------------- several servers, one store
@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    """``[server] workers = 2``: two server processes sharing the listener and the store, so
    consecutive requests land on either (the lines before the first table go to [server])."""
    srv = acme_server(tmp_path_factory.mktemp("workers"), challtestsrv, "")
    srv.stop()
    srv.extra_config = "workers = 2\n" + srv.extra_config
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def test_nonces_and_orders_across_server_processes(two_workers: CertforgeServer) -> None:
    """A nonce one process issued is good once at the other; state is in the store."""
    c = client_for(two_workers)
    assert c.register().status == 201
    _, _, pem = issue(two_workers, c, ["workers.example.com"])
    assert b"BEGIN CERTIFICATE" in pem
    for _ in range(20):  # each request uses the nonce of the previous response
        resp = c.post(c.kid or "", b"", nonce=c.nonce())
        assert resp.status == 200, resp.body
    nonce = c.nonce()
    assert c.post(c.kid or "", nonce=nonce).status == 200
    replays = [c.post(c.kid or "", nonce=nonce) for _ in range(6)]
    assert {r.problem for r in replays} == {"badNonce"}


def _answer_http01(
    server: CertforgeServer, client: Client, name: str, answer: Any
) -> dict[str, Any]:
    """Order ``name``, answer its http-01 challenge with ``answer(token, key_authz)`` (a
    mapping for the responder), and return the authorization once decided."""
    order = client.new_order(name).json()
    authz_url = order["authorizations"][0]
    challenge = next(
        c for c in client.post(authz_url).json()["challenges"] if c["type"] == "http-01"
    )
    answers = answer(challenge["token"], client.key_authorization(challenge["token"]))
    with http01_responder(http01_port(server), answers):
        client.post(challenge["url"], {})
        return client.poll(authz_url, ("valid", "invalid"))


def test_a_quick_validation_is_in_the_challenge_response(
    server: CertforgeServer, client: Client
) -> None:
    order = client.new_order("quick.example.com").json()
    authz_url = order["authorizations"][0]
    challenge = next(
        c for c in client.post(authz_url).json()["challenges"] if c["type"] == "http-01"
    )
    answers = {challenge["token"]: client.key_authorization(challenge["token"])}
    with http01_responder(http01_port(server), answers):
        answered = client.post(challenge["url"], {})
    assert answered.status == 200
    assert answered.json()["status"] == "valid", answered.json()
    assert "Retry-After" not in answered.headers
    assert "validated" in answered.json()
    assert client.post(authz_url).json()["status"] == "valid"  # no polling needed


def test_a_slow_validation_answers_processing_and_goes_on(
    server: CertforgeServer, client: Client
) -> None:
    """The response waits about a second for the validation, no longer; the validation goes
    on in the background and decides the authorization."""
    order = client.new_order("slow.example.com").json()
    authz_url = order["authorizations"][0]
    challenge = next(
        c for c in client.post(authz_url).json()["challenges"] if c["type"] == "http-01"
    )
    key_authz = client.key_authorization(challenge["token"])
    with http01_responder(http01_port(server), {challenge["token"]: f"slow:3:{key_authz}"}):
        started = time.monotonic()
        answered = client.post(challenge["url"], {})
        waited = time.monotonic() - started
        assert answered.json()["status"] == "processing", answered.json()
        assert answered.headers["Retry-After"] == "1"
        assert 0.9 < waited < 2.5, waited
        authz = client.poll(authz_url, ("valid", "invalid"))
    assert authz["status"] == "valid", authz


def test_http01_follows_redirects(server: CertforgeServer, client: Client) -> None:
    port = http01_port(server)

    def answer(token: str, key_authz: str) -> dict[str, str]:
        target = f"http://redirect.example.com:{port}/.well-known/acme-challenge/moved"
        return {token: f"redirect:{target}", "moved": key_authz}

    authz = _answer_http01(server, client, "redirect.example.com", answer)
    assert authz["status"] == "valid", authz


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    srv = acme_server(
        tmp_path_factory.mktemp("guarded"),
        challtestsrv,
        'caa_identities = ["certforge.example"]\nvalidation_deny_ranges = ["192.0.2.0/24"]',
    )
    yield srv
    assert srv.stop() == 0, srv.log_tail()


def test_caa_is_checked(guarded: CertforgeServer, challtestsrv: ChallTestSrv) -> None:
    """RFC 8659: a CAA set naming another CA forbids issuance; one naming ours allows it."""
    client = client_for(guarded)
    client.register()
    assert client.directory["meta"]["caaIdentities"] == ["certforge.example"]
    challtestsrv.add_caa("forbidden.caa.example.com", "issue", "other-ca.example")
    challtestsrv.add_caa("allowed.caa.example.com", "issue", "certforge.example")

    def answer(token: str, key_authz: str) -> dict[str, str]:
        return {token: key_authz}

    forbidden = _answer_http01(guarded, client, "forbidden.caa.example.com", answer)
    assert forbidden["status"] == "invalid"
    assert forbidden["challenges"][0]["error"]["type"].endswith(":caa")
    allowed = _answer_http01(guarded, client, "allowed.caa.example.com", answer)
    assert allowed["status"] == "valid"


def test_validation_never_connects_to_denied_ranges(guarded: CertforgeServer) -> None:
    client = client_for(guarded)
    client.register()
    authz = _answer_http01(guarded, client, "192.0.2.10", lambda t, k: {t: k})
    assert authz["status"] == "invalid"
    error = next(c["error"] for c in authz["challenges"] if c.get("error"))
    assert error["type"].endswith(":rejectedIdentifier")


def test_authorization_deactivation(client: Client) -> None:
    """RFC 8555 §7.5.2: the client deactivates an authorization; its order is invalid."""
    resp = client.new_order("deactivate.example.com")
    order_url, authz_url = resp.headers["Location"], resp.json()["authorizations"][0]
    done = client.post(authz_url, {"status": "deactivated"})
    assert done.json()["status"] == "deactivated"
    assert client.post(authz_url, {"status": "valid"}).problem == "malformed"
    assert client.post(order_url).json()["status"] == "invalid"


def tlsalpn01_port(server: CertforgeServer) -> int:
    line = next(x for x in server.config_text().splitlines() if x.startswith("tlsalpn01_port"))
    return int(line.split("=")[1])


@pytest.mark.parametrize(
    ("identifier", "sni"),
    [
        pytest.param("127.0.0.1", "1.0.0.127.in-addr.arpa", id="ip"),
        pytest.param("alpn.example.com", "alpn.example.com", id="dns"),
    ],
)
def test_tls_alpn01(
    server: CertforgeServer, client: Client, tmp_path: Path, identifier: str, sni: str
) -> None:
    """RFC 8737 (and RFC 8738 §6 for an IP address: SNI is its reverse-mapping name)."""
    order = client.new_order(identifier).json()
    authz_url = order["authorizations"][0]
    challenge = next(
        c for c in client.post(authz_url).json()["challenges"] if c["type"] == "tls-alpn-01"
    )
    cert, key = alpn_certificate(tmp_path, identifier, client.key_authorization(challenge["token"]))
    with tls_alpn_responder(tlsalpn01_port(server), cert, key) as names:
        client.post(challenge["url"], {})
        authz = client.poll(authz_url, ("valid", "invalid"))
    assert authz["status"] == "valid", authz
    assert names == [sni]


def test_tls_alpn01_wrong_digest(server: CertforgeServer, client: Client, tmp_path: Path) -> None:
    order = client.new_order("alpn-bad.example.com").json()
    authz_url = order["authorizations"][0]
    challenge = next(
        c for c in client.post(authz_url).json()["challenges"] if c["type"] == "tls-alpn-01"
    )
    cert, key = alpn_certificate(tmp_path, "alpn-bad.example.com", "not.the-key-authorization")
    with tls_alpn_responder(tlsalpn01_port(server), cert, key):
        client.post(challenge["url"], {})
        authz = client.poll(authz_url, ("valid", "invalid"))
    error = next(c["error"] for c in authz["challenges"] if c.get("error"))
    assert error["type"].endswith(":incorrectResponse")
