"""A minimal tls-alpn-01 responder (RFC 8737) for the raw-client tests: it presents a
self-signed certificate naming one identifier, with the critical acmeIdentifier extension,
to a client negotiating "acme-tls/1", and records the SNI it was asked for."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def alpn_certificate(work: Path, identifier: str, key_authz: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(identifier))
    except ValueError:
        san = x509.DNSName(identifier)
    digest = hashlib.sha256(key_authz.encode()).digest()
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme-tls-alpn-01")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER, b"\x04\x20" + digest), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = work / "alpn.pem", work / "alpn.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def tls_alpn_responder(port: int, cert: Path, key: Path) -> Iterator[list[str]]:
    """Answer TLS handshakes on 127.0.0.1:port until the block ends; yields the SNIs seen."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.set_alpn_protocols(["acme-tls/1"])
    names: list[str] = []

    def record_sni(_sock: ssl.SSLObject, name: str, _ctx: ssl.SSLContext) -> int | None:
        names.append(name or "")  # None when the client sent no SNI, typeshed aside
        return None

    context.sni_callback = record_sni
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield names
    finally:
        stop.set()
        thread.join()
        listener.close()
