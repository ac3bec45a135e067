"""Seeded mutations of valid requests to every front end (bytes flipped, cut or inserted,
arrays and objects nested up to 30,000 deep, the URL, a header or the credential grown past
aiohttp's 8,190-byte line limit): each answers in its own error format, never with a server
error, and logs no error (DEVELOPERS.md: bad input gets a clear error,
never a crash). The seed is fixed, so a failure here replays; ``CERTFORGE_FUZZ_SEED`` and
``CERTFORGE_FUZZ_COUNT`` explore further."""

from __future__ import annotations

import base64
import json
import os
import random
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.integration.scep_http import scep_ca
from tests.integration.server import CertforgeServer
from tests.interop.acme.client import jwk_of
from tests.scep_client import Message, MessageType, make_csr, rsa_key, self_signed
from tests.unit.factories import make_csr as make_p10

SEED = int(os.environ.get("CERTFORGE_FUZZ_SEED", "20261130"))
COUNT = int(os.environ.get("CERTFORGE_FUZZ_COUNT", "150"))
CHALLENGE = "fuzz-static-challenge"


NESTING = [(b"[", b"]"), (b'{"a":', b"}"), (b'{"a":[', b"]}")]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few byte flips, cuts, insertions of random bytes or of nesting (up to 30,000 levels
    of arrays or objects, closed or not), or a truncation."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        if op < 0.35 and out:
            out[rng.randrange(len(out))] = rng.randrange(256)
        elif op < 0.55 and out:
            start = rng.randrange(len(out))
            del out[start : start + 1 + rng.randrange(20)]
        elif op < 0.75:
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif op < 0.85:
            # Mostly where a JSON value may start, so that a parser meets the nesting.
            starts = [i + 1 for i, c in enumerate(out) if c in b":[,"] or [len(out)]
            at = rng.choice(starts) if rng.random() < 0.8 else rng.randrange(len(out) + 1)
            opening, closing = rng.choice(NESTING)
            levels = _levels(rng)
            out[at:at] = opening * levels + (closing * levels if rng.random() < 0.5 else b"")
        else:
            del out[rng.randrange(len(out) + 1) :]
    return bytes(out)


def _levels(rng: random.Random) -> int:
    """Shallow, near the decoder's recursion limit, or far past it."""
    return rng.choice([rng.randint(1, 40), rng.randint(900, 1100), rng.randint(5000, 30_000)])


def mutate_head(
    rng: random.Random, url: str, headers: dict[str, str]
) -> tuple[str, dict[str, str]]:
    """Sometimes a longer URL, a long extra header or a longer credential: 4,000 to 20,000
    bytes, on either side of aiohttp's 8,190-byte line limit."""
    size, roll = rng.randint(4000, 20_000), rng.random()
    if roll < 0.1:
        return f"{url}{'&' if '?' in url else '?'}pad={'p' * size}", headers
    if roll < 0.2:
        return url, headers | {"X-Fuzz": "h" * size}
    if roll < 0.3 and "Authorization" in headers:
        return url, headers | {"Authorization": headers["Authorization"] + "A" * size}
    return url, headers


def _status(
    context: ssl.SSLContext, method: str, url: str, headers: dict[str, str], body: bytes | None
) -> int:
    """The HTTP status of one request; the body is not read."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()  # its response, unread: left to the collector it warns
        return exc.code


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CertforgeServer]:
    srv = CertforgeServer(
        tmp_path_factory.mktemp("fuzz") / "data",
        extra_config=f'[scep.static_challenges]\ndevice = "{CHALLENGE}"\n',
    )
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log_tail()
    errors = [
        line
        for line in srv.log_path.read_text().splitlines()  # type: ignore[union-attr]
        if '"level": "error"' in line or '"level": "critical"' in line
    ]
    assert not errors, errors[:3]


# URL, headers, a valid part to mutate, and what makes the body of it: the part itself, or for
# "acme_header" the JWS carrying the part as its protected header (so that nesting and byte
# mutations reach the header's JSON, not only its base64url).
Target = tuple[str, dict[str, str], bytes, Callable[[bytes], bytes]]


def _jws_around(protected: bytes) -> bytes:
    encoded = base64.urlsafe_b64encode(protected).rstrip(b"=").decode()
    return json.dumps({"protected": encoded, "payload": "", "signature": "AAAA"}).encode()


def _itself(part: bytes) -> bytes:
    return part


@pytest.fixture(scope="module")
def targets(fuzzed: CertforgeServer) -> dict[str, Target]:
    server = fuzzed
    token = server.cli("token", "create", "fuzz", check=True).stdout.strip()
    password = server.cli("est", "user", "add", "fuzz", check=True).stdout.strip()
    basic = base64.b64encode(f"fuzz:{password}".encode()).decode()
    csr = make_p10("fuzz.example.com")
    scep_url = f"{server.http_url}/scep"
    _, recipient = scep_ca(scep_url)
    key = rsa_key()
    scep = Message(
        message_type=MessageType.PKCS_REQ,
        content=make_csr(key, "fuzz-device", challenge=CHALLENGE),
        recipient=recipient,
        signer_cert=self_signed(key, "fuzz-device"),
        signer_key=key,
    ).build()
    jws = {"protected": "eyJhbGciOiJFUzI1NiJ9", "payload": "", "signature": "AAAA"}
    new_account = f"{server.url}/acme/new-account"
    account_key = ec.generate_private_key(ec.SECP256R1())
    header = {"alg": "ES256", "nonce": "AAAA", "url": new_account, "jwk": jwk_of(account_key)}
    return {
        "rest": (
            f"{server.url}/api/v1/requests",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/pkcs10"},
            csr,
            _itself,
        ),
        "rest_json": (
            f"{server.url}/api/v1/requests",
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            json.dumps({"csr": base64.b64encode(csr).decode(), "profile": None}).encode(),
            _itself,
        ),
        "est": (
            f"{server.url}/.well-known/est/simpleenroll",
            {"Authorization": f"Basic {basic}", "Content-Type": "application/pkcs10"},
            base64.encodebytes(csr),
            _itself,
        ),
        "scep": (
            f"{scep_url}?operation=PKIOperation",
            {"Content-Type": "application/x-pki-message"},
            scep,
            _itself,
        ),
        "acme": (
            new_account,
            {"Content-Type": "application/jose+json"},
            json.dumps(jws).encode(),
            _itself,
        ),
        "acme_header": (
            new_account,
            {"Content-Type": "application/jose+json"},
            json.dumps(header).encode(),
            _jws_around,
        ),
    }


@pytest.mark.parametrize("front_end", ["rest", "rest_json", "est", "scep", "acme", "acme_header"])
def test_mutated_requests_get_client_errors(
    fuzzed: CertforgeServer, targets: dict[str, Target], front_end: str
) -> None:
    url, headers, valid, body_of = targets[front_end]
    context = ssl.create_default_context(cafile=str(fuzzed.root))
    rng = random.Random(f"{SEED}-{front_end}")  # noqa: S311 - replayable mutations, not secrets
    statuses: dict[int, int] = {}
    for _ in range(COUNT):
        body = body_of(mutate(rng, valid))
        sent_url, sent_headers = mutate_head(rng, url, headers)
        status = _status(context, "POST", sent_url, sent_headers, body)
        assert status < 500, f"{front_end}: {status} for {body[:120]!r}"
        statuses[status] = statuses.get(status, 0) + 1
    # Most mutations must be refused as the client's error; a few may still be valid.
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) > COUNT // 2, statuses


ODD_VALUES: list[object] = [
    None, True, 0, -1, 2**70, 1.5, "", "x" * 3000, "keyCompromise", "removeFromCRL",
    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "not-a-date", [], {}, ["a"], {"a": 1}, "\u0000",
]  # fmt: skip
ADMIN_FIELDS = ["reason", "invalidity_date", "name", "role", "roles", "expires_in", "profile",
                "lifetime_seconds", "serial", "key", "issuer", "by", "limit", "offset"]  # fmt: skip
ADMIN_QUERY = ["status", "limit", "offset", "subject", "san", "serial", "issuer", "requester",
               "expires_before", "expires_after", "profile", "key", "request_id"]  # fmt: skip


def _odd_json(rng: random.Random) -> object:
    """Mostly an object naming some of the fields admin endpoints read, with odd values."""
    if rng.random() < 0.1:
        return rng.choice(ODD_VALUES)
    return {f: rng.choice(ODD_VALUES) for f in ADMIN_FIELDS if rng.random() < 0.3}


def test_odd_admin_requests_get_client_errors(fuzzed: CertforgeServer) -> None:
    """Bodies and queries of the wrong shapes and types to every admin endpoint: 4xx (or a
    success where the odd value is acceptable), never a 5xx."""
    rng = random.Random(f"{SEED}-admin")  # noqa: S311 - replayable mutations, not secrets
    serial = "ff" * 8
    endpoints = [
        ("POST", f"/certificates/{serial}/revoke"), ("POST", f"/certificates/{serial}/unrevoke"),
        ("POST", "/requests/unknown/approve"), ("POST", "/requests/unknown/deny"),
        ("POST", "/tokens"), ("POST", "/crl/publish"), ("POST", "/scep/challenges"),
        ("POST", "/est/users"), ("POST", "/acme/eab"), ("POST", "/acme/renewal"),
        ("GET", "/requests"), ("GET", "/certificates"), ("GET", "/events"),
        ("POST", "/tokens/unknown/revoke"), ("GET", "/tokens"),
    ]  # fmt: skip
    context = ssl.create_default_context(cafile=str(fuzzed.root))
    for _ in range(COUNT * 3):
        method, path = rng.choice(endpoints)
        url, body = f"{fuzzed.url}/api/v1/admin{path}", None
        if method == "GET":
            query = {rng.choice(ADMIN_QUERY): str(rng.choice(ODD_VALUES))[:64] for _ in range(2)}
            url += "?" + urllib.parse.urlencode(query)
        else:
            body = json.dumps(_odd_json(rng)).encode()
            if rng.random() < 0.2:  # the same byte and nesting mutations as the front ends'
                body = mutate(rng, body)
        headers = {"Authorization": f"Bearer {fuzzed.token}", "Content-Type": "application/json"}
        url, headers = mutate_head(rng, url, headers)
        status = _status(context, method, url, headers, body)
        assert status < 500, f"{method} {url}: {status} for {body!r}"
