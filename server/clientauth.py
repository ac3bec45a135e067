"""The HTTPS listener asks every client for a certificate, and never refuses one itself.

Front ends that authenticate with TLS client certificates (EST, RFC 7030 §3.3.2) need the
certificate the client sent, and they answer in their own terms when it is not acceptable
(an HTTP 403 with the reason: unknown issuer, expired, revoked). Clients that send none (REST,
admin, ACME, browsers) are unaffected: the certificate is requested, not required
(``ssl.CERT_OPTIONAL``).

Python's ``ssl`` module has no verification callback, so with ``CERT_OPTIONAL`` OpenSSL itself
would abort the handshake on an untrusted or expired client certificate (a TLS alert, not an
answer the client can read). ``accept_any_client_certificate`` installs, through ctypes, the
OpenSSL verification callback that accepts the chain; the handshake then completes and the
front end verifies the certificate (``SSLObject.getpeercert(binary_form=True)``) against its
own trust anchors. Python's ``SSLContext`` keeps an installed callback when its verify mode is
set again. If the hook cannot be installed (another Python or OpenSSL build), the listener
falls back to OpenSSL's own verification against the CA names loaded into the context, and
logs it: untrusted certificates are then refused by the handshake instead of with a 403.

``peer_chain`` gives the front end the intermediates the client sent after its certificate
(``SSL_get_peer_cert_chain``, also through ctypes: Python 3.11 has no accessor), so that a
device certificate issued by an intermediate of a trust anchor can be verified.
"""

from __future__ import annotations

import ctypes
import logging
import ssl
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography import x509

from server.errors import ConfigError

log = logging.getLogger("certforge.tls")

_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def _accept_chain(preverify_ok: int, store_ctx: int | None) -> int:
    """OpenSSL's verify_callback: 1 continues the handshake whatever the chain's verdict."""
    return 1


_accept = _VERIFY_CALLBACK(_accept_chain)


def request_client_certificates(context: ssl.SSLContext, ca_pems: Iterable[str]) -> bool:
    """Ask clients for a certificate (optional); name ``ca_pems`` in the CertificateRequest.

    Returns True when the handshake accepts any certificate (the front end verifies it), False
    when OpenSSL verifies it against ``ca_pems`` (the fallback).
    """
    for pem in ca_pems:
        context.load_verify_locations(cadata=pem)
    context.verify_mode = ssl.CERT_OPTIONAL
    try:
        accept_any_client_certificate(context)
    except (OSError, AttributeError, ValueError) as exc:
        log.warning(
            "cannot install the TLS client certificate hook; OpenSSL verifies client "
            "certificates itself (untrusted ones fail the handshake)",
            extra={"error": str(exc)},
        )
        return False
    return True


def accept_any_client_certificate(context: ssl.SSLContext) -> None:
    """Install ``_accept`` as the context's OpenSSL verify callback (see the module doc)."""
    libssl = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined] # the C module's path; its symbols resolve to the libssl it links
    get_mode = libssl.SSL_CTX_get_verify_mode
    get_mode.argtypes, get_mode.restype = [ctypes.c_void_p], ctypes.c_int
    get_options = libssl.SSL_CTX_get_options
    get_options.argtypes, get_options.restype = [ctypes.c_void_p], ctypes.c_uint64
    set_verify = libssl.SSL_CTX_set_verify
    set_verify.argtypes, set_verify.restype = (
        [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK],
        None,
    )
    # CPython's PySSLContext starts with its SSL_CTX pointer right after the object header.
    ssl_ctx = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    # Check the pointer before using it: it must be the SSL_CTX this context configures.
    if not ssl_ctx or get_options(ssl_ctx) != int(context.options):
        raise ValueError("the SSLContext's layout is not the one expected")
    mode = get_mode(ssl_ctx)
    if mode != 1:  # SSL_VERIFY_PEER, what CERT_OPTIONAL sets
        raise ValueError(f"unexpected verify mode {mode}")
    set_verify(ssl_ctx, mode, _accept)


def peer_chain(tls: ssl.SSLObject) -> list[bytes]:
    """The certificates the client sent after its own (DER), as OpenSSL kept them; empty when
    it sent none, on a resumed session (which keeps only the leaf), or where the hook is not
    available. Python 3.11's ``ssl`` has no accessor (``get_unverified_chain`` is 3.13), so
    this reads ``SSL_get_peer_cert_chain`` through ctypes, checking the pointer first."""
    try:
        return _peer_chain(tls)
    except (OSError, AttributeError, ValueError) as exc:
        log.warning("cannot read the TLS client's certificate chain", extra={"error": str(exc)})
        return []


def _peer_chain(tls: ssl.SSLObject) -> list[bytes]:
    libssl = ctypes.CDLL(ssl._ssl.__file__)  # type: ignore[attr-defined] # see accept_any_client_certificate
    ptr = ctypes.c_void_p
    get_ctx = _function(libssl, "SSL_get_SSL_CTX", [ptr], ptr)
    get_chain = _function(libssl, "SSL_get_peer_cert_chain", [ptr], ptr)
    count = _function(libssl, "OPENSSL_sk_num", [ptr], ctypes.c_int)
    item = _function(libssl, "OPENSSL_sk_value", [ptr, ctypes.c_int], ptr)
    i2d = _function(libssl, "i2d_X509", [ptr, ctypes.POINTER(ctypes.c_char_p)], ctypes.c_int)
    # CPython's PySSLSocket holds, after the object header, its socket's weakref then SSL *.
    inner = tls._sslobj  # type: ignore[attr-defined] # the _ssl._SSLSocket behind SSLObject
    ssl_ptr = ptr.from_address(id(inner) + object.__basicsize__ + ctypes.sizeof(ptr)).value
    ctx_ptr = ptr.from_address(id(tls.context) + object.__basicsize__).value
    if not ssl_ptr or not ctx_ptr or get_ctx(ssl_ptr) != ctx_ptr:
        raise ValueError("the SSLObject's layout is not the one expected")
    chain = get_chain(ssl_ptr)
    found: list[bytes] = []
    for index in range(count(chain) if chain else 0):
        x509_ptr = item(chain, index)
        size = i2d(x509_ptr, None)
        if size <= 0:
            raise ValueError("a certificate of the client's chain cannot be encoded")
        buffer = ctypes.create_string_buffer(size)
        cursor = ctypes.c_char_p(ctypes.addressof(buffer))
        i2d(x509_ptr, ctypes.byref(cursor))
        found.append(buffer.raw[:size])
    return found


def _function(lib: ctypes.CDLL, name: str, args: list[Any], result: Any) -> Any:
    function = getattr(lib, name)
    function.argtypes, function.restype = args, result
    return function


def load_trust_anchors(paths: Iterable[Path], data_dir: Path) -> list[x509.Certificate]:
    """The certificates in the PEM files ``paths`` (relative: in ``data_dir``)."""
    anchors: list[x509.Certificate] = []
    for path in paths:
        full = data_dir / path
        try:
            anchors += x509.load_pem_x509_certificates(full.read_bytes())
        except OSError as exc:
            raise ConfigError(f"[est] trust_anchors: cannot read {full}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(f"[est] trust_anchors: {full} holds no PEM certificate") from exc
    return anchors
