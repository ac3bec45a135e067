"""A raw ACME client for the tests: builds every JWS itself, so a test can send each defect
(wrong url, reused nonce, wrong alg...) a real client never would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(n: int, size: int | None = None) -> str:
    return b64(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


def jwk_of(key: PrivateKey) -> dict[str, str]:
    match key:
        case ec.EllipticCurvePrivateKey():
            nums = key.public_key().public_numbers()
            size = (key.curve.key_size + 7) // 8
            crv = {256: "P-256", 384: "P-384"}[key.curve.key_size]
            return {"crv": crv, "kty": "EC", "x": _int(nums.x, size), "y": _int(nums.y, size)}
        case rsa.RSAPrivateKey():
            pn = key.public_key().public_numbers()
            return {"e": _int(pn.e), "kty": "RSA", "n": _int(pn.n)}
        case ed25519.Ed25519PrivateKey():
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return {"crv": "Ed25519", "kty": "OKP", "x": b64(raw)}


def thumbprint(key: PrivateKey) -> str:
    canonical = json.dumps(jwk_of(key), separators=(",", ":"), sort_keys=True).encode()
    return b64(hashlib.sha256(canonical).digest())


def alg_of(key: PrivateKey) -> str:
    match key:
        case ec.EllipticCurvePrivateKey():
            return "ES256" if key.curve.key_size == 256 else "ES384"
        case rsa.RSAPrivateKey():
            return "RS256"
        case ed25519.Ed25519PrivateKey():
            return "EdDSA"


def sign(key: PrivateKey, alg: str, data: bytes) -> bytes:
    match key:
        case ec.EllipticCurvePrivateKey():
            digest = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
            size = (key.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        case rsa.RSAPrivateKey():
            from cryptography.hazmat.primitives.asymmetric import padding

            return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        case ed25519.Ed25519PrivateKey():
            return key.sign(data)


def jws(
    key: PrivateKey, protected: dict[str, Any], payload: bytes, *, alg: str | None = None
) -> dict[str, str]:
    protected = {"alg": alg or alg_of(key), **protected}
    p64, b = b64(json.dumps(protected).encode()), b64(payload)
    return {
        "protected": p64,
        "payload": b,
        "signature": b64(sign(key, protected["alg"], f"{p64}.{b}".encode())),
    }


def eab_binding(kid: str, hmac_key: str, key: PrivateKey, url: str) -> dict[str, str]:
    protected = b64(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
    payload = b64(json.dumps(jwk_of(key)).encode())
    secret = base64.urlsafe_b64decode(hmac_key + "==")
    mac = hmac.new(secret, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64(mac)}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def problem(self) -> str:
        return str(self.json().get("type", "")).rpartition(":")[2]


@dataclass
class Client:
    directory_url: str
    context: ssl.SSLContext
    key: PrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    kid: str | None = None
    directory: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = self.request("GET", self.directory_url).json()

    def request(
        self, method: str, url: str, body: bytes | None = None, ctype: str = "application/jose+json"
    ) -> Response:
        req = urllib.request.Request(url, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=30) as resp:
                return Response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, dict(exc.headers), exc.read())

    def nonce(self) -> str:
        return self.request("HEAD", self.directory["newNonce"]).headers["Replay-Nonce"]

    def post(
        self,
        url: str,
        payload: Any = b"",
        *,
        key: PrivateKey | None = None,
        use_jwk: bool | None = None,
        nonce: str | None = None,
        header: dict[str, Any] | None = None,
        alg: str | None = None,
        sign_url: str | None = None,
    ) -> Response:
        key = key or self.key
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        protected: dict[str, Any] = {"nonce": nonce or self.nonce(), "url": sign_url or url}
        if use_jwk or (use_jwk is None and self.kid is None):
            protected["jwk"] = jwk_of(key)
        else:
            protected["kid"] = self.kid
        protected |= header or {}
        return self.request("POST", url, json.dumps(jws(key, protected, raw, alg=alg)).encode())

    def register(self, **payload: Any) -> Response:
        resp = self.post(
            self.directory["newAccount"], {"termsOfServiceAgreed": True, **payload}, use_jwk=True
        )
        if resp.status in (200, 201):
            self.kid = resp.headers["Location"]
        return resp

    def new_order(self, *names: str, **extra: Any) -> Response:
        identifiers = [
            {"type": "ip" if n.replace(".", "").isdigit() or ":" in n else "dns", "value": n}
            for n in names
        ]
        return self.post(self.directory["newOrder"], {"identifiers": identifiers, **extra})

    def key_authorization(self, token: str) -> str:
        return f"{token}.{thumbprint(self.key)}"

    def poll(self, url: str, until: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = self.post(url).json()
            if body["status"] in until or time.monotonic() > deadline:
                return dict(body)
            time.sleep(0.1)  # the protocol's own polling, with a short Retry-After


def make_csr(names: list[str], key: PrivateKey | None = None) -> tuple[bytes, PrivateKey]:
    import ipaddress

    key = key or ec.generate_private_key(ec.SECP256R1())
    general: list[x509.GeneralName] = []
    for n in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            general.append(x509.DNSName(n))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName(general), critical=False)
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER), key
