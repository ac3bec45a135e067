"""Attacker input against the real ACME server, from a security probe's findings: each test
here failed on the code before its fix. After each, the server has logged no error (a
client's mistake is never the server's error)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.integration.server import CertforgeServer
from tests.interop.acme.challtestsrv import ChallTestSrv
from tests.interop.acme.client import Client, Response, eab_binding, jwk_of, jws
from tests.interop.acme.conftest import acme_server, http01_port
from tests.interop.acme.responder import http01_responder

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def error_lines(server: CertforgeServer) -> list[str]:
    assert server.log_path is not None
    lines = server.log_path.read_text(errors="replace").splitlines()
    return [x for x in lines if '"level": "error"' in x or '"level": "critical"' in x]


def _serve(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv, extra: str, name: str
) -> Iterator[CertforgeServer]:
    srv = acme_server(tmp_path_factory.mktemp(name), challtestsrv, extra)
    yield srv
    assert srv.stop() == 0, srv.log_tail()
    assert not error_lines(srv), error_lines(srv)[:3]


@pytest.fixture(scope="module")
def plain(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    yield from _serve(tmp_path_factory, challtestsrv, "", "hardening")


@pytest.fixture(scope="module")
def eab_server(
    tmp_path_factory: pytest.TempPathFactory, challtestsrv: ChallTestSrv
) -> Iterator[CertforgeServer]:
    yield from _serve(tmp_path_factory, challtestsrv, "eab_required = true", "eab-race")


def client_for(server: CertforgeServer, **kw: Any) -> Client:
    return Client(f"{server.url}/acme/directory", server.ssl_context(), **kw)


def registered(server: CertforgeServer) -> Client:
    c = client_for(server)
    assert c.register().status == 201
    return c


def order_ip(c: Client, value: str) -> Response:
    return c.post(c.directory["newOrder"], {"identifiers": [{"type": "ip", "value": value}]})


def order_dns(c: Client, value: str) -> Response:
    return c.post(c.directory["newOrder"], {"identifiers": [{"type": "dns", "value": value}]})


def answer_http01(
    server: CertforgeServer, c: Client, order: Response, answer: Any
) -> dict[str, Any]:
    """Answer the order's http-01 challenge with ``answer(token, key_authz)`` (the responder's
    mapping); the challenge once decided."""
    assert order.status == 201, order.body
    authz_url = order.json()["authorizations"][0]
    challenge = next(c for c in c.post(authz_url).json()["challenges"] if c["type"] == "http-01")
    answers = answer(challenge["token"], c.key_authorization(challenge["token"]))
    with http01_responder(http01_port(server), answers):
        c.post(challenge["url"], {})
        c.poll(authz_url, ("valid", "invalid"))
    return dict(c.post(challenge["url"]).json())


# ---------------------------------------------------------------- finding 3: EAB race
def signed(c: Client, key: Any, url: str, payload: dict[str, Any], jwk: Any = None) -> bytes:
    """A JWS with "jwk" (by default the key's own), signed by ``key``, with a fresh nonce."""
    protected = {"nonce": c.nonce(), "url": url, "jwk": jwk or jwk_of(key)}
    return json.dumps(jws(key, protected, json.dumps(payload).encode())).encode()


def _eab_payload(kid: str, hmac_key: str, key: Any, url: str) -> dict[str, Any]:
    return {
        "termsOfServiceAgreed": True,
        "externalAccountBinding": eab_binding(kid, hmac_key, key, url),
    }


def _send_together(c: Client, url: str, bodies: list[bytes]) -> list[Response]:
    barrier = threading.Barrier(len(bodies))

    def send(body: bytes) -> Response:
        barrier.wait()
        return c.request("POST", url, body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _has_account(c: Client) -> bool:
    resp = c.post(c.directory["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
    assert resp.status == 200 or resp.problem == "accountDoesNotExist", resp.body
    return resp.status == 200


def test_one_eab_credential_binds_one_account_under_concurrent_new_accounts(
    eab_server: CertforgeServer,
) -> None:
    """RFC 8555 §7.3.4 and the README: one credential binds one account. Eight newAccounts
    with eight keys and one credential at once: one account, whichever wins."""
    for _ in range(3):  # the race is decided in milliseconds: give it a few chances
        kid, hmac_key = eab_server.cli("acme", "eab", "create", check=True).stdout.split()
        clients = [client_for(eab_server) for _ in range(8)]
        c, url = clients[0], clients[0].directory["newAccount"]
        bodies = [signed(c, x.key, url, _eab_payload(kid, hmac_key, x.key, url)) for x in clients]
        answers = _send_together(c, url, bodies)
        assert sorted(r.status for r in answers) == [201] + [403] * 7, [r.body for r in answers]
        assert {r.problem for r in answers if r.status == 403} == {"unauthorized"}
        assert sum(_has_account(x) for x in clients) == 1


def test_one_key_racing_with_several_credentials_uses_up_one(eab_server: CertforgeServer) -> None:
    """A key asking with four credentials at once gets one account; the credentials its
    other requests claimed are released for other accounts (a refused newAccount does not
    use up its credential)."""
    c = client_for(eab_server)
    credentials = [
        eab_server.cli("acme", "eab", "create", check=True).stdout.split() for _ in range(4)
    ]
    url = c.directory["newAccount"]
    bodies = [signed(c, c.key, url, _eab_payload(kid, k, c.key, url)) for kid, k in credentials]
    answers = _send_together(c, url, bodies)
    assert sorted(r.status for r in answers)[0] == 201, [r.body for r in answers]
    assert {r.status for r in answers} <= {200, 201}, [r.body for r in answers]
    assert len({r.headers["Location"] for r in answers}) == 1
    others = [client_for(eab_server) for _ in credentials]
    bound = [
        o.register(externalAccountBinding=eab_binding(kid, key, o.key, url)).status
        for o, (kid, key) in zip(others, credentials, strict=True)
    ]
    assert sorted(bound) == [201, 201, 201, 403], bound


def test_a_refused_new_account_keeps_its_credential(eab_server: CertforgeServer) -> None:
    c = client_for(eab_server)
    kid, hmac_key = eab_server.cli("acme", "eab", "create", check=True).stdout.split()
    url = c.directory["newAccount"]
    binding = eab_binding(kid, hmac_key, c.key, url)
    refused = c.register(externalAccountBinding=binding, contact=["tel:+1"])
    assert refused.problem == "unsupportedContact"
    assert c.register(externalAccountBinding=binding).status == 201


# ------------------------------------------------------------- finding 11: nonces
def _respellings(nonce: str) -> list[str]:
    """The same octets spelled otherwise: the last character's unused bits set, and
    characters outside the base64url alphabet inserted (a lax decoder skips them)."""
    last = B64URL.index(nonce[-1])
    unused = (1 << (len(nonce) * 6 % 8)) - 1  # the bits past the last whole octet
    spelled = [nonce[:10] + "!!!!" + nonce[10:], nonce + "\n"]
    spelled += [nonce[:-1] + B64URL[last | bits] for bits in range(1, unused + 1)]
    return spelled


def test_a_used_nonce_cannot_be_reused_by_spelling_it_otherwise(plain: CertforgeServer) -> None:
    """RFC 8555 §6.5: a nonce is good once; RFC 7515 §2: base64url without padding and
    without other characters, so each spelling but the canonical one is not a nonce."""
    c = registered(plain)
    nonce = c.nonce()
    assert c.post(c.kid or "", nonce=nonce).status == 200
    spellings = _respellings(nonce)
    assert len(spellings) >= 3
    for spelled in spellings:
        resp = c.post(c.kid or "", nonce=spelled)
        assert resp.problem == "badNonce", (spelled, resp.status, resp.body)


# ---------------------------------------------------------- finding 12: key spellings
def test_one_ed25519_key_cannot_hold_two_accounts_by_respelling_x(plain: CertforgeServer) -> None:
    """RFC 8555 §7.3.1: a newAccount with a key in use returns that key's account; a JWK
    "x" with the last character's unused bits set is the same key, not another one."""
    key = ed25519.Ed25519PrivateKey.generate()
    c = client_for(plain, key=key)
    first = c.register()
    assert first.status == 201
    jwk = jwk_of(key)
    url = c.directory["newAccount"]
    for spelled in _respellings(jwk["x"]):
        body = signed(c, key, url, {"termsOfServiceAgreed": True}, jwk | {"x": spelled})
        resp = c.request("POST", url, body)
        assert resp.status != 201, resp.body
        assert resp.status == 200 or resp.problem == "malformed", resp.body
        if resp.status == 200:
            assert resp.headers["Location"] == first.headers["Location"]


def test_key_change_to_a_key_in_use_respelled_is_refused(plain: CertforgeServer) -> None:
    """RFC 8555 §7.3.5: a new key already in use by another account is refused; the same
    Ed25519 key with "x" spelled otherwise is that key."""
    taken = ed25519.Ed25519PrivateKey.generate()
    assert client_for(plain, key=taken).register().status == 201
    c = registered(plain)
    url = c.directory["keyChange"]
    jwk = jwk_of(taken)
    for spelled in _respellings(jwk["x"]):
        inner = jws(
            taken,
            {"jwk": jwk | {"x": spelled}, "url": url},
            json.dumps({"account": c.kid, "oldKey": jwk_of(c.key)}).encode(),
        )
        resp = c.post(url, inner)
        assert resp.status in (400, 409), (spelled, resp.status, resp.body)


# ------------------------------------------ findings 9, 10a, 18: identifiers are refused
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param("::1%\r\nX-Injected: 1", "malformed", id="zone/crlf"),
        pytest.param("fe80::1%eth0", "malformed", id="zone/interface"),
        pytest.param("fe80::1%25x y/z?#", "malformed", id="zone/url_characters"),
        pytest.param("2001:DB8:0:0::1", "malformed", id="text/not_rfc5952"),
        pytest.param("::ffff:127.0.0.1", "rejectedIdentifier", id="address/ipv4_mapped"),
        pytest.param(
            "0.0.0.0",  # noqa: S104 - an identifier under test, not a listening address
            "rejectedIdentifier",
            id="address/unspecified_v4",
        ),
        pytest.param("::", "rejectedIdentifier", id="address/unspecified_v6"),
        pytest.param("224.0.0.1", "rejectedIdentifier", id="address/multicast_v4"),
        pytest.param("ff02::1", "rejectedIdentifier", id="address/multicast_v6"),
        pytest.param("255.255.255.255", "rejectedIdentifier", id="address/broadcast"),
    ],
)
def test_ip_identifiers_no_server_can_have_are_refused(
    plain: CertforgeServer, value: str, problem: str
) -> None:
    """RFC 8738 §3: the value is an address in its RFC 1123 §2.1 / RFC 5952 §4 text form;
    a zone, another spelling, or an address no server answers at is refused, not rewritten."""
    resp = order_ip(registered(plain), value)
    assert (resp.status, resp.problem) == (400, problem), resp.body


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\u212aelvin.example.com", id="unicode/kelvin_sign"),
        pytest.param("b\u00fccher.example.com", id="unicode/u_label"),
        pytest.param("www.example.com.", id="trailing_dot/one"),
        pytest.param("www.example.com...", id="trailing_dot/several"),
        pytest.param("*.example.com.", id="trailing_dot/wildcard"),
        pytest.param("xn--zz\u00e9.example.com", id="unicode/in_a_label"),
        pytest.param("xn--zz.example.com", id="a_label/not_punycode"),
    ],
)
def test_dns_identifiers_are_refused_not_rewritten(plain: CertforgeServer, value: str) -> None:
    """RFC 5280 §4.2.1.6: a dNSName is in the preferred name syntax (IDNs as A-labels,
    RFC 5890 §2.3.2.1); "\u212a" (KELVIN SIGN) lower-cased is "k", so a lax server issued
    kelvin.example.com for a name nobody validated as such."""
    resp = order_dns(registered(plain), value)
    assert (resp.status, resp.problem) == (400, "rejectedIdentifier"), resp.body


def test_canonical_identifiers_are_still_accepted(plain: CertforgeServer) -> None:
    c = registered(plain)
    for value in ("2001:db8::1", "192.0.2.1", "fd00::1:2"):
        assert order_ip(c, value).status == 201, value
    resp = order_dns(c, "WWW.Example.COM")  # DNS names are case-insensitive (RFC 4343)
    assert resp.json()["identifiers"] == [{"type": "dns", "value": "www.example.com"}]
    assert order_dns(c, "xn--bcher-kva.example.com").status == 201


# --------------------------------------------- findings 10b, 19: http-01 redirects
@pytest.mark.parametrize(
    "location",
    [
        pytest.param("http://127.0.0.1:99999/", id="port_out_of_range"),
        pytest.param("http://[::1/", id="unclosed_bracket"),
        pytest.param("http://[fe80::1%25eth0]/", id="zone"),
        pytest.param("http://exa mple.com/", id="space_in_host"),
    ],
)
def test_a_redirect_to_an_unparseable_url_fails_the_challenge(
    plain: CertforgeServer, location: str
) -> None:
    """The validation ends: the challenge is invalid with a connection problem (it crashed
    with a ValueError and stayed processing), and nothing is logged as an error."""
    c = registered(plain)
    order = order_dns(c, "unparseable.example.com")
    challenge = answer_http01(plain, c, order, lambda t, k: {t: f"redirect:{location}"})
    assert challenge["status"] == "invalid", challenge
    assert challenge["error"]["type"].endswith(":connection"), challenge
    assert not error_lines(plain)


class Listener:
    """A TCP port that counts the connections it accepts (and closes each at once)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.accepted = int(self.sock.getsockname()[1]), 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)


def test_redirects_reach_only_the_http01_port_and_443(plain: CertforgeServer) -> None:
    """RFC 8555 §8.3 allows redirects; like Let's Encrypt, certforge follows them only to
    http on the port it validates http-01 on and to https on 443, so a responder cannot
    point the validator at other ports (it was a port scanner)."""
    listener = Listener()
    c = registered(plain)
    try:
        for location in (
            f"http://127.0.0.1:{listener.port}/",
            f"https://127.0.0.1:{listener.port}/",
            f"http://127.0.0.1:{http01_port(plain)}@127.0.0.1:{listener.port}/",
            "ftp://127.0.0.1/",
        ):
            order = order_dns(c, "portscan.example.com")
            challenge = answer_http01(
                plain, c, order, lambda t, k, u=location: {t: f"redirect:{u}"}
            )
            assert challenge["status"] == "invalid", challenge
            assert challenge["error"]["type"].endswith(":connection"), challenge
    finally:
        listener.close()
    assert listener.accepted == 0


def test_a_failed_connection_is_reported_without_its_socket_error(plain: CertforgeServer) -> None:
    """The detail names the host, not the socket's error ("Connect call failed", errno):
    what told a closed port from an open one is gone."""
    c = registered(plain)
    port = http01_port(plain)
    order = order_dns(c, "refused.example.com")
    target = f"http://127.0.0.2:{port}/.well-known/acme-challenge/x"  # nothing listens there
    challenge = answer_http01(plain, c, order, lambda t, k: {t: f"redirect:{target}"})
    assert challenge["status"] == "invalid", challenge
    detail = challenge["error"]["detail"]
    assert detail == "connection to 127.0.0.2 failed", detail


def test_too_many_redirects(plain: CertforgeServer) -> None:
    c = registered(plain)
    port = http01_port(plain)
    loop = f"http://loop.example.com:{port}/.well-known/acme-challenge/loop"
    order = order_dns(c, "loop.example.com")
    challenge = answer_http01(
        plain, c, order, lambda t, k: {t: f"redirect:{loop}", "loop": f"redirect:{loop}"}
    )
    assert challenge["status"] == "invalid", challenge
    assert "redirects" in challenge["error"]["detail"]
