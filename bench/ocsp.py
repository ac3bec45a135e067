"""OCSP responses per second over HTTP, beside the raw ECDSA P-256 signing rate.

    .venv/bin/python -m bench.ocsp [--seconds 10] [--certs 200] [--concurrency 32]
                                   [--driver wrk|aiohttp]

In the same run:
  sign    ECDSA P-256 signatures per second with ``cryptography`` on one core, over a message
          the size of a BasicOCSPResponse's tbsResponseData (the raw signing rate);
  build   whole OCSP responses built and signed per second with cryptography's
          ``OCSPResponseBuilder`` on one core, without HTTP (the best a responder that signs
          per request could do);
  get     RFC 5019 GETs (``/ocsp/<base64 request>``) and
  post    POSTs of the DER request, both against ``certforge serve`` as a subprocess on the
          default SQLite store, at ``--concurrency`` keep-alive connections, cycling over
          ``--certs`` certificates of which every other one is revoked (a 50/50 mix of good
          and revoked answers); requests carry no nonce, as browsers' do not.
The load comes from another process (``wrk`` with one thread when installed, else an aiohttp
client), so the server has a core of its own on a 2-core machine. Before timing, every
request's answer is checked (status successful, good or revoked as expected).
Target (issue 3): >= 5,000 responses/s on 2 cores, i.e. the responder must not sign per request.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from tests.integration.server import CertforgeServer
from tests.unit.factories import make_csr

TBS_RESPONSE_SIZE = 200


def sign_rate(seconds: float) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    message = b"\x30" * TBS_RESPONSE_SIZE
    algorithm = ec.ECDSA(hashes.SHA256())
    count, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        key.sign(message, algorithm)
        count += 1
    return count / (time.perf_counter() - started)


def build_rate(seconds: float) -> float:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench OCSP")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    sha1 = hashes.SHA1()  # noqa: S303 - the CertID hash clients send (RFC 5019)
    count, deadline = 0, time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        (
            ocsp.OCSPResponseBuilder()
            .add_response_by_hash(
                b"\1" * 20,
                b"\2" * 20,
                count + 1,
                sha1,
                ocsp.OCSPCertStatus.GOOD,
                now,
                now + timedelta(hours=24),
                None,
                None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, cert)
            .certificates([cert])
            .sign(key, hashes.SHA256())
            .public_bytes(Encoding.DER)
        )
        count += 1
    return count / (time.perf_counter() - started)


async def prepare(server: CertforgeServer, certs: int) -> tuple[list[bytes], list[bool]]:
    """Issue ``certs`` certificates, revoke every other one; their OCSP requests (no nonce)."""
    token = server.cli("token", "create", "bench", check=True).stdout.strip()
    ctx = ssl.create_default_context(cafile=str(server.root))
    requests: list[bytes] = []
    revoked: list[bool] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        for i in range(certs):
            async with session.post(
                f"{server.url}/api/v1/requests",
                data=make_csr(f"ocsp{i}.bench.test"),
                headers={"Content-Type": "application/pkcs10", "Authorization": f"Bearer {token}"},
            ) as resp:
                body = await resp.json()
            assert body.get("status") == "issued", body
            leaf = x509.load_pem_x509_certificate(body["certificate"].encode())
            issuer = x509.load_pem_x509_certificate(body["chain"][0].encode())
            sha1 = hashes.SHA1()  # noqa: S303 - the CertID hash clients send (RFC 5019)
            req = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, sha1).build()
            requests.append(req.public_bytes(Encoding.DER))
            revoked.append(i % 2 == 1)
            if revoked[-1]:
                async with session.post(
                    f"{server.url}/api/v1/admin/certificates/{body['serial']}/revoke",
                    json={"reason": "keyCompromise"},
                    headers={"Authorization": f"Bearer {server.token}"},
                ) as resp:
                    assert resp.status == 200, await resp.text()
        for der, is_revoked in zip(requests, revoked, strict=True):
            async with session.post(f"{server.http_url}/ocsp", data=der) as resp:
                answer = ocsp.load_der_ocsp_response(await resp.read())
            assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
            expected = ocsp.OCSPCertStatus.REVOKED if is_revoked else ocsp.OCSPCertStatus.GOOD
            assert answer.certificate_status is expected
    return requests, revoked


def get_path(der: bytes) -> str:
    return "/ocsp/" + urllib.parse.quote(base64.b64encode(der).decode(), safe="")


def _lua_bytes(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def wrk_rate(url: str, ders: list[bytes], *, method: str, seconds: float, conns: int) -> float:
    if method == "GET":
        items = ", ".join(f'"{get_path(d)}"' for d in ders)
        request = 'wrk.format("GET", items[i])'
    else:
        items = ", ".join(_lua_bytes(d) for d in ders)
        request = 'wrk.format("POST", "/ocsp", headers, items[i])'
    script = f"""
items = {{{items}}}
headers = {{["Content-Type"] = "application/ocsp-request"}}
n = 0
request = function()
  n = n + 1
  local i = (n % #items) + 1
  return {request}
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{conns}", f"-d{seconds:.0f}s", "-s", f.name, url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    Path(f.name).unlink()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError("wrk saw errors:\n" + out)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def _aiohttp_driver(
    url: str,
    ders: list[bytes],
    method: str,
    seconds: float,
    conns: int,
    out: multiprocessing.Queue,  # type: ignore[type-arg]  # multiprocessing's Queue is not generic at runtime
) -> None:
    async def run() -> float:
        done = 0
        deadline = time.perf_counter() + seconds
        connector = aiohttp.TCPConnector(limit=conns)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker(w: int) -> None:
                nonlocal done
                i = w
                while time.perf_counter() < deadline:
                    der = ders[i % len(ders)]
                    if method == "GET":
                        call = session.get(url + get_path(der))
                    else:
                        call = session.post(url + "/ocsp", data=der)
                    async with call as resp:
                        await resp.read()
                        assert resp.status == 200
                    done += 1
                    i += conns

            started = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(conns)))
            return done / (time.perf_counter() - started)

    out.put(asyncio.run(run()))


def aiohttp_rate(url: str, ders: list[bytes], *, method: str, seconds: float, conns: int) -> float:
    queue: multiprocessing.Queue[float] = multiprocessing.Queue()
    proc = multiprocessing.Process(
        target=_aiohttp_driver, args=(url, ders, method, seconds, conns, queue)
    )
    proc.start()
    rate = queue.get(timeout=seconds + 60)
    proc.join()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--certs", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--driver", choices=("wrk", "aiohttp"), default=None)
    args = parser.parse_args()
    driver = args.driver or ("wrk" if shutil.which("wrk") else "aiohttp")
    rate = wrk_rate if driver == "wrk" else aiohttp_rate
    sign = sign_rate(args.seconds)
    build = build_rate(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        server = CertforgeServer(Path(tmp) / "data", extra_config='log_level = "warning"')
        server.start()
        try:
            ders, _ = asyncio.run(prepare(server, args.certs))
            results = {
                method: rate(
                    server.http_url,
                    ders,
                    method=method,
                    seconds=args.seconds,
                    conns=args.concurrency,
                )
                for method in ("GET", "POST")
            }
        finally:
            assert server.stop() == 0
    print(
        json.dumps(
            {
                "driver": driver,
                "concurrency": args.concurrency,
                "certificates": args.certs,
                "sign_per_s": round(sign),
                "build_and_sign_per_s": round(build),
                "get_per_s": round(results["GET"]),
                "post_per_s": round(results["POST"]),
                "get_ratio_to_sign": round(results["GET"] / sign, 3),
                "post_ratio_to_sign": round(results["POST"] / sign, 3),
                "get_ratio_to_build": round(results["GET"] / build, 3),
                "post_ratio_to_build": round(results["POST"] / build, 3),
                "target_per_s": 5000,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
