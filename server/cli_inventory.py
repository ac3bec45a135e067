"""``certforge cert list|show`` and ``certforge request list|show``: the inventory, read
through the admin API a page at a time.

Listing pages with the API's ``next`` cursor over one kept-alive HTTPS connection, and writes
each page before asking for the next, so ``--all`` or an export of a million certificates
holds one page (at most 1,000 records) in memory. A list that stops before the end says so in
one last line. The server checks every filter (an unknown or malformed one is its 400, which
is exit 1 here with its one-line reason).
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import queue
import re
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ObjectIdentifier, SignatureAlgorithmOID

from server.cli import Client, Refused, emit, make_client

_SIGNATURES = {
    oid: name.lower().replace("_", "-")
    for name, oid in vars(SignatureAlgorithmOID).items()
    if isinstance(oid, ObjectIdentifier)
}
PAGE = 1000  # the admin API's largest page
OUTPUT_CHUNK = 1 << 16
HUMAN_PAGE = 100
_DURATION = re.compile(r"(\d{1,9})([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# What each list's CSV export holds, in order.
CERT_COLUMNS = (
    "serial",
    "status",
    "subject",
    "sans",
    "issuer",
    "profile",
    "not_before",
    "not_after",
    "requester",
    "revoked_at",
    "revocation_reason",
)
REQUEST_COLUMNS = (
    "id",
    "status",
    "profile",
    "protocol",
    "requester",
    "subject",
    "sans",
    "created_at",
    "serial",
    "reason",
)
# CLI option -> API filter.
_FILTERS = {
    "status": "status",
    "subject": "subject",
    "san": "san",
    "serial": "serial",
    "profile": "profile",
    "issuer": "issuer",
    "protocol": "protocol",
    "requester": "requester",
    "expiring": "expiring",
    "issued_after": "issued_after",
    "issued_before": "issued_before",
    "reason": "reason",
    "sort": "sort",
    "order": "order",
}


def add_list_options(p: argparse.ArgumentParser, statuses: tuple[str, ...]) -> None:
    p.add_argument("--all", action="store_true", help="every page, not only the first")
    p.add_argument("--limit", type=int, help="at most N records (default 100; --all: no limit)")
    p.add_argument("--status", choices=statuses)
    p.add_argument("--subject", help="substring of the subject, any case")
    p.add_argument("--san", help="substring of a subject alternative name, any case")
    p.add_argument("--serial", help="start of the hexadecimal serial number")
    p.add_argument("--profile")
    p.add_argument("--issuer", help="issuing CA (certificates only)")
    p.add_argument("--protocol", help="rest, acme, scep, est...")
    p.add_argument("--requester", help="as listed, e.g. token:NAME")
    p.add_argument("--expiring", metavar="DURATION", help="expires within DURATION (30d, 12h)")
    p.add_argument("--issued-after", metavar="TIME", help="ISO 8601 time, or a DURATION ago")
    p.add_argument("--issued-before", metavar="TIME", help="ISO 8601 time, or a DURATION ago")
    p.add_argument("--reason", help="revocation reason (certificates only)")
    p.add_argument("--sort", choices=("issued", "expiry"))
    p.add_argument("--order", choices=("asc", "desc"))
    p.add_argument("--format", choices=("json", "csv", "pem"), help="export the whole result")


def _when(text: str) -> str:
    """An option's time: ISO 8601 as given (the server checks it), or ``7d``: 7 days ago."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        return text
    ago = timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        return (datetime.now(UTC) - ago).isoformat()
    except OverflowError:
        raise Refused(f"{text!r} reaches before year 1") from None


def _filters(args: argparse.Namespace) -> dict[str, str]:
    params: dict[str, str] = {}
    for option, name in _FILTERS.items():
        value = getattr(args, option, None)
        if value is not None:
            params[name] = _when(value) if option.startswith("issued_") else str(value)
    return params


def pages(
    client: Client, path: str, params: dict[str, str], *, page: int
) -> Generator[dict[str, Any], None, None]:
    """Every page of a list, following ``next``, over one connection."""
    url = urllib.parse.urlsplit(client.url)
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        conn = http.client.HTTPSConnection(
            url.hostname or "", url.port or 443, context=client.context, timeout=120
        )
    else:
        conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=120)
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    cursor: str | None = None
    try:
        while True:
            query = params | {"limit": str(page)} | ({"cursor": cursor} if cursor else {})
            conn.request(
                "GET", f"{url.path}{path}?{urllib.parse.urlencode(query)}", headers=headers
            )
            resp = conn.getresponse()
            raw = resp.read()
            if resp.status != 200:
                raise Refused(f"{_detail(raw) or resp.reason} (HTTP {resp.status})")
            body: dict[str, Any] = json.loads(raw)
            yield body
            cursor = body.get("next")
            if not cursor:
                return
    except ssl.SSLCertVerificationError as exc:
        raise Refused(client.untrusted(exc)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise Refused(f"cannot reach {client.url}: {exc}") from None
    finally:
        conn.close()


T = TypeVar("T")


class _End:
    pass


def read_ahead(source: Iterator[T]) -> Generator[T, None, None]:
    """The items of ``source``, each fetched by a thread while the caller works on the one
    before: the server prepares the next page while this one is written out, instead of each
    waiting for the other (an export ran at the sum of both's time per page). At most one
    page waits, so memory stays at a few pages. An exception of ``source`` is raised here."""
    handoff: queue.Queue[T | BaseException | _End] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: T | BaseException | _End) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_End())
        except BaseException as exc:  # handed to the caller, who raises it
            put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="certforge-pages", daemon=True)
    thread.start()
    try:
        while not isinstance(item := handoff.get(), _End):
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class ChunkedOutput:
    """Standard output written in chunks of about 64 KiB: a list of a million lines would
    otherwise be a million system calls wherever output is unbuffered (PYTHONUNBUFFERED, a
    terminal's line buffering)."""

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= OUTPUT_CHUNK:
            self.flush()
        return len(text)

    def flush(self) -> None:
        sys.stdout.write("".join(self._parts))
        sys.stdout.flush()
        self._parts.clear()
        self._size = 0


def _detail(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:200]
    return str(body.get("detail", "")) if isinstance(body, dict) else str(body)


def run_list(args: argparse.Namespace, kind: str) -> None:
    """``cert list`` (kind "certificates") and ``request list`` ("requests")."""
    if args.limit is not None and args.limit < 1:
        raise Refused("--limit must be at least 1")
    params = _filters(args)
    export = args.format or ("json" if args.json and args.all else None)
    everything = args.all or (export is not None and args.limit is None)
    wanted = None if everything and args.limit is None else (args.limit or HUMAN_PAGE)
    if export == "pem":
        params["pem"] = "true"
    size = PAGE if wanted is None else min(wanted, PAGE)
    client = make_client(args)
    if args.json and export is None:  # one page, as the API gave it
        first = next(pages(client, f"/api/v1/admin/{kind}", params, page=size))
        print(json.dumps(first, indent=2))
        return
    source = pages(client, f"/api/v1/admin/{kind}", params, page=size)
    if wanted is None or wanted > size:  # more than one page: read the next meanwhile
        source = read_ahead(source)
    records = _records(source, kind, wanted)
    out = ChunkedOutput()
    try:
        if export == "csv":
            _write_csv(out, records, CERT_COLUMNS if kind == "certificates" else REQUEST_COLUMNS)
        elif export == "json":
            _write_json(out, records, kind)
        elif export == "pem":
            for record, more in records:
                if not more:
                    out.write(record["certificate" if kind == "certificates" else "csr"])
        else:
            _write_lines(out, records, kind)
    finally:
        records.close()
        source.close()  # stops the thread reading ahead, and its connection
        out.flush()


def _records(
    source: Iterator[dict[str, Any]], kind: str, wanted: int | None
) -> Generator[tuple[dict[str, Any], bool], None, None]:
    """Each record, with whether more follow the last one wanted."""
    count = 0
    for body in source:
        for record in body[kind]:
            if wanted is not None and count == wanted:
                yield {}, True
                return
            count += 1
            yield record, False
        if wanted is not None and count == wanted and body.get("next"):
            yield {}, True
            return


def _write_lines(
    out: ChunkedOutput, records: Iterator[tuple[dict[str, Any], bool]], kind: str
) -> None:
    now = datetime.now(UTC).isoformat()
    for r, more in records:
        if more:
            out.write("... more: use --all or --limit N\n")
        elif kind == "certificates":
            status = r["status"]
            if status == "valid" and r["not_after"] < now:
                status = "expired"
            out.write(f"{r['serial']} {status} {r['not_after']} {r['subject'] or '-'}\n")
        else:
            out.write(f"{r['id']} {r['status']} {r['profile']} {r['subject'] or '-'}\n")


def _write_csv(
    out: ChunkedOutput, records: Iterator[tuple[dict[str, Any], bool]], columns: tuple[str, ...]
) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r, more in records:
        if not more:
            writer.writerow(
                [" ".join(r[c]) if c == "sans" else ("" if r[c] is None else r[c]) for c in columns]
            )


def _write_json(
    out: ChunkedOutput, records: Iterator[tuple[dict[str, Any], bool]], kind: str
) -> None:
    """One JSON document, ``{KIND: [...]}``, written record by record."""
    out.write(f'{{"{kind}": [')
    first = True
    for r, more in records:
        if not more:
            out.write(("\n" if first else ",\n") + json.dumps(r))
            first = False
    out.write("\n]}\n")


# ---------------------------------------------------------------------- show
def key_description(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name} ({key.key_size} bits)"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def _sans(ext_owner: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    try:
        ext = ext_owner.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [f"{type(n).__name__.removesuffix('Name').lower()}:{n.value}" for n in ext.value]


def _events(body: dict[str, Any]) -> list[str]:
    lines = []
    for e in body.get("events", []):
        data = e.get("data") or {}
        extra = " ".join(f"{k}={v}" for k, v in sorted(data.items()) if isinstance(v, str | int))
        lines.append(f"event {e['at']} {e['kind']}" + (f" {extra}" if extra else ""))
    return lines


def run_request_show(args: argparse.Namespace) -> None:
    client = make_client(args)
    _, body = client.call("GET", f"/api/v1/admin/requests/{urllib.parse.quote(args.id, safe='')}")
    csr = x509.load_pem_x509_csr(body["csr"].encode())
    draft = body.get("draft") or {}
    decision = body["status"] + (f": {body['reason']}" if body.get("reason") else "")
    lines = [
        f"request {body['id']}",
        f"status {decision}",
        f"profile {body['profile']}",
        f"protocol {body['protocol']}",
        f"requester {body['requester']}",
        f"created {body['created_at']}",
        f"updated {body['updated_at']}",
        f"subject {csr.subject.rfc4514_string() or '-'}",
        *(f"san {s}" for s in _sans(csr)),
        f"key {key_description(csr.public_key())}",
        f"signature {'valid' if csr.is_signature_valid else 'INVALID'}",
    ]
    if draft:
        days = draft.get("validity_seconds", 0) / 86400
        lines += [
            f"policy issuer {draft.get('issuer')}, validity {days:g} days",
            *(f"policy san {s}" for s in draft.get("sans", [])),
        ]
    if body.get("serial"):
        lines.append(f"serial {body['serial']}")
    lines += _events(body)
    emit(args, body, "\n".join(lines))


def run_cert_show(args: argparse.Namespace, serial_path: str) -> None:
    client = make_client(args)
    _, body = client.call("GET", f"/api/v1/admin/certificates/{serial_path}")
    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
    _, chain_pem = client.call("GET", f"/api/v1/ca/{urllib.parse.quote(body['issuer'])}/chain")
    chain = (
        x509.load_pem_x509_certificates(chain_pem.encode()) if isinstance(chain_pem, str) else []
    )
    body["chain"] = [c.subject.rfc4514_string() for c in chain]
    status = body["status"]
    if status == "valid" and cert.not_valid_after_utc < datetime.now(UTC):
        status = "expired"
    if body.get("revocation_reason"):
        status += f" {body['revocation_reason']} since {body['revoked_at']}"
    lines = [
        f"serial {body['serial']}",
        f"subject {body['subject'] or '-'}",
        *(f"san {s}" for s in _sans(cert)),
        f"issuer {body['issuer']} ({cert.issuer.rfc4514_string()})",
        f"not_before {body['not_before']}",
        f"not_after {body['not_after']}",
        f"status {status}",
        f"profile {body['profile']}",
        f"requester {body['requester']}",
        f"request {body['request_id']}",
        f"key {key_description(cert.public_key())}",
        f"signature {_SIGNATURES.get(cert.signature_algorithm_oid, 'other')}",
        f"sha256 {cert.fingerprint(hashes.SHA256()).hex()}",
        *(f"chain {subject}" for subject in body["chain"]),
        *_events(body),
    ]
    emit(args, body, "\n".join(lines))
