"""Identifier validation: http-01 (RFC 8555 §8.3), dns-01 (§8.4), tls-alpn-01 (RFC 8737),
IP identifiers (RFC 8738), and CAA (RFC 8659) when ``[acme] caa_identities`` is set.

Each validator raises ``ValidationFailed`` carrying the ACME problem that the challenge
records. Names are resolved over ``[acme] resolvers`` (dnspython) or, when none are set, the
system resolver; validation never connects to an address in ``[acme]
validation_deny_ranges``. http-01 follows redirects only to http on the http-01 port and to
https on 443, and reports a failed fetch without its socket error. The caller bounds every
attempt with ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier
from yarl import URL

from protocols.acme.config import ACMEConfig
from protocols.acme.jws import b64encode
from protocols.acme.problems import ProblemType
from server.config import parse_host_port
from server.errors import Malformed
from server.model import Identifier, IdentifierType

ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1
ACME_TLS_ALPN = "acme-tls/1"
MAX_REDIRECTS = 10
MAX_BODY = 8192
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class ValidationFailed(Exception):
    def __init__(self, type_: ProblemType, detail: str) -> None:
        super().__init__(detail)
        self.type, self.detail = type_, detail


def key_authorization(token: str, thumbprint: str) -> str:
    """RFC 8555 §8.1: token || '.' || base64url(JWK_Thumbprint(accountKey))."""
    return f"{token}.{thumbprint}"


def dns01_txt(key_authz: str) -> str:
    """RFC 8555 §8.4: base64url(SHA-256(key authorization))."""
    return b64encode(hashlib.sha256(key_authz.encode()).digest())


@dataclass(frozen=True)
class Validator:
    """The validation settings and the DNS resolver, built once per ACME sub-app."""

    settings: ACMEConfig
    session: aiohttp.ClientSession | None = None  # shared by validations; see new_session

    def new_session(self) -> aiohttp.ClientSession:
        """An HTTP client resolving through this validator (configured DNS, deny list),
        not verifying TLS (RFC 8555 §8.3 redirects to https need no valid certificate), and
        keeping no connection between validations."""
        connector = aiohttp.TCPConnector(resolver=_Resolver(self), ssl=False, force_close=True)
        return aiohttp.ClientSession(connector=connector)

    def resolver(self) -> dns.asyncresolver.Resolver | None:
        return _resolver(tuple(self.settings.resolvers)) if self.settings.resolvers else None

    # ------------------------------------------------------------------- DNS
    async def addresses(self, name: str) -> list[_Address]:
        """The addresses of a name (or an address itself), IPv4 first, without those never
        validated; an empty answer is a dns problem."""
        try:
            found = [ipaddress.ip_address(name)]
        except ValueError:
            found = await self._resolve(name)
        allowed = [a for a in found if not self.is_denied(a)]
        if not allowed:
            raise ValidationFailed(
                ProblemType.REJECTED_IDENTIFIER,
                f"{name} resolves only to addresses never validated",
            )
        return allowed

    async def _resolve(self, name: str) -> list[_Address]:
        found: list[_Address] = []
        resolver = self.resolver()
        if resolver is None:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise ValidationFailed(ProblemType.DNS, f"cannot resolve {name}: {exc}") from None
            found = [ipaddress.ip_address(str(info[4][0])) for info in infos]
        else:
            answers = await asyncio.gather(self._query(name, "A"), self._query(name, "AAAA"))
            found = [ipaddress.ip_address(r.address) for records in answers for r in records]
        found = sorted(dict.fromkeys(found), key=lambda a: a.version)
        if not found:
            raise ValidationFailed(ProblemType.DNS, f"no A or AAAA records for {name}")
        return found

    def is_denied(self, address: _Address) -> bool:
        """Whether validation must not connect to ``address``: the unspecified address
        (RFC 1122 §3.2.1.3: never a destination; a socket to it reaches this host), or one in
        ``validation_deny_ranges``; either also as the IPv4 address an IPv6 one carries
        (IPv4-mapped, 6to4, Teredo, NAT64), which a socket may reach in its stead."""
        denied = [
            ipaddress.ip_network(r, strict=False) for r in self.settings.validation_deny_ranges
        ]
        return any(a.is_unspecified or any(a in n for n in denied) for a in _embedded(address))

    async def _query(self, name: str, rdtype: str) -> Sequence[Any]:
        resolver = self.resolver() or dns.asyncresolver.Resolver()
        try:
            answer = await resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return []
        except dns.exception.DNSException as exc:
            raise ValidationFailed(
                ProblemType.DNS, f"DNS query for {rdtype} {name} failed: {type(exc).__name__}"
            ) from None
        return list(answer.rrset or [])

    # --------------------------------------------------------------- http-01
    async def http01(self, identifier: Identifier, token: str, key_authz: str) -> None:
        """RFC 8555 §8.3: GET http://{domain}/.well-known/acme-challenge/{token}; the body
        is the key authorization (whitespace trimmed). Redirects are followed, at most 10 of
        them, to http on the http-01 port or https on 443 (``_check_url``)."""
        host = f"[{identifier.value}]" if ":" in identifier.value else identifier.value
        url = f"http://{host}:{self.settings.http01_port}/.well-known/acme-challenge/{token}"
        if self.session is not None:
            body = await self._follow(self.session, url)
        else:
            async with self.new_session() as session:
                body = await self._follow(session, url)
        if body.strip() != key_authz:
            raise ValidationFailed(
                ProblemType.INCORRECT_RESPONSE,
                f"the response at {url} is not the key authorization",
            )

    async def _follow(self, session: aiohttp.ClientSession, url: str) -> str:
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url)
            try:
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = _redirect_target(resp.url, resp.headers["Location"])
                        continue
                    if resp.status != 200:
                        raise ValidationFailed(
                            ProblemType.UNAUTHORIZED, f"{url} answered HTTP {resp.status}"
                        )
                    raw = await resp.content.read(MAX_BODY)
                    return raw.decode("utf-8", errors="replace")
            except aiohttp.ClientConnectorError as exc:
                # A DNS or deny-list refusal from _Resolver keeps its own problem type.
                if isinstance(exc.os_error.__cause__, ValidationFailed):
                    raise exc.os_error.__cause__ from None
                raise _unreachable(url) from None
            except (aiohttp.ClientError, OSError, ValueError):
                # ValueError: aiohttp or yarl refusing what the responder's redirect named.
                raise _unreachable(url) from None
        raise ValidationFailed(ProblemType.CONNECTION, f"more than {MAX_REDIRECTS} redirects")

    def _check_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            hostname, _ = parts.hostname, parts.port  # each may raise ValueError
        except ValueError:
            raise ValidationFailed(
                ProblemType.CONNECTION, f"redirected to {url!r}, which is not a valid URL"
            ) from None
        if parts.scheme not in ("http", "https"):
            raise ValidationFailed(ProblemType.CONNECTION, f"redirect to a non-HTTP URL {url}")
        # RFC 8555 §8.3 lets the server follow redirects. Like Let's Encrypt, certforge
        # follows them only to http on the port it validates http-01 on ([acme] http01_port,
        # 80 by default) and to https on 443, so that a responder cannot aim the validator at
        # any other port of any host (the answers told open ports from closed ones).
        port = parts.port or (80 if parts.scheme == "http" else 443)
        if port != (self.settings.http01_port if parts.scheme == "http" else 443):
            raise ValidationFailed(
                ProblemType.CONNECTION,
                f"redirect to port {port}: only http on port {self.settings.http01_port} "
                "and https on port 443 are followed",
            )
        try:
            address = ipaddress.ip_address(hostname or "")
        except ValueError:
            return  # a name: the resolver checks its addresses
        if self.is_denied(address):
            raise ValidationFailed(
                ProblemType.REJECTED_IDENTIFIER, f"{address} is an address never validated"
            )

    # ---------------------------------------------------------------- dns-01
    async def dns01(self, identifier: Identifier, token: str, key_authz: str) -> None:
        """RFC 8555 §8.4: a TXT record at _acme-challenge.<domain> holds the digest."""
        name = f"_acme-challenge.{identifier.value}"
        expected = dns01_txt(key_authz)
        records = await self._query(name, "TXT")
        values = [b"".join(r.strings).decode(errors="replace") for r in records]
        if expected not in values:
            raise ValidationFailed(
                ProblemType.INCORRECT_RESPONSE,
                f"no TXT record at {name} holds the expected value ({len(values)} found)",
            )

    # ----------------------------------------------------------- tls-alpn-01
    async def tls_alpn01(self, identifier: Identifier, token: str, key_authz: str) -> None:
        """RFC 8737 §3: a TLS handshake with ALPN "acme-tls/1" and SNI the name (for an IP,
        RFC 8738 §6: its reverse-mapping name) yields a certificate naming exactly the
        identifier, with a critical acmeIdentifier extension holding SHA-256(key authz)."""
        sni = identifier.value
        if identifier.type is IdentifierType.IP:
            sni = ipaddress.ip_address(identifier.value).reverse_pointer
        der = await self._handshake(identifier, sni)
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise ValidationFailed(
                ProblemType.TLS, "the certificate presented is malformed"
            ) from None
        check_alpn_certificate(cert, identifier, key_authz)

    async def _handshake(self, identifier: Identifier, sni: str) -> bytes:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the certificate is self-signed by design
        context.set_alpn_protocols([ACME_TLS_ALPN])
        last: Exception | None = None
        for address in await self.addresses(identifier.value):
            try:
                _, writer = await asyncio.open_connection(
                    str(address), self.settings.tlsalpn01_port, ssl=context, server_hostname=sni
                )
            except (OSError, ssl.SSLError) as exc:
                last = exc
                continue
            try:
                sslobj: ssl.SSLObject = writer.get_extra_info("ssl_object")
                if sslobj.selected_alpn_protocol() != ACME_TLS_ALPN:
                    raise ValidationFailed(
                        ProblemType.TLS, f"the server did not negotiate {ACME_TLS_ALPN}"
                    )
                der = sslobj.getpeercert(binary_form=True)
            finally:
                writer.close()
            if not der:
                raise ValidationFailed(ProblemType.TLS, "the server presented no certificate")
            return der
        raise ValidationFailed(
            ProblemType.CONNECTION, f"cannot connect for tls-alpn-01: {type(last).__name__}"
        )

    # ------------------------------------------------------------------- CAA
    async def check_caa(self, identifier: Identifier, *, wildcard: bool) -> None:
        """RFC 8659 §3: the relevant CAA set is the first found climbing from the name; if it
        has "issue" (or, for a wildcard, "issuewild") properties, one must name us."""
        if not self.settings.caa_identities or identifier.type is not IdentifierType.DNS:
            return
        name = dns.name.from_text(identifier.value)
        while name != dns.name.root and len(name.labels) > 1:
            records = await self._query(name.to_text(), "CAA")
            if records:
                _judge_caa(records, self.settings.caa_identities, wildcard, identifier.value)
                return
            name = name.parent()


def _judge_caa(records: Sequence[Any], ours: Sequence[str], wildcard: bool, name: str) -> None:
    tags = {r.tag.decode().lower() for r in records}
    for r in records:
        if r.flags & 128 and r.tag.decode().lower() not in ("issue", "issuewild", "iodef"):
            raise ValidationFailed(ProblemType.CAA, f"CAA for {name} has an unknown critical tag")
    tag = "issuewild" if wildcard and "issuewild" in tags else "issue"
    values = [
        r.value.decode().split(";")[0].strip().lower()
        for r in records
        if r.tag.decode().lower() == tag
    ]
    if not values and tag == "issue" and "issue" not in tags:
        return
    if not any(v in ours for v in values):
        raise ValidationFailed(ProblemType.CAA, f"CAA records for {name} forbid issuance by us")


def check_alpn_certificate(cert: x509.Certificate, identifier: Identifier, key_authz: str) -> None:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ext = cert.extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except (x509.ExtensionNotFound, ValueError):
        raise ValidationFailed(
            ProblemType.UNAUTHORIZED,
            "the certificate lacks a subjectAltName or the acmeIdentifier extension",
        ) from None
    # RFC 8737 §3: "The subjectAltName extension ... MUST contain a single dNSName entry"
    # (RFC 8738 §6: a single iPAddress entry for an IP identifier).
    try:
        names = [Identifier.from_general_name(n) for n in sans]
    except Malformed:  # a name type or value no identifier has: not the one asked for
        names = []
    if names != [identifier]:
        raise ValidationFailed(
            ProblemType.UNAUTHORIZED, f"the certificate must name exactly {identifier.value}"
        )
    # RFC 8737 §3: the acmeIdentifier extension "MUST be critical".
    if not ext.critical:
        raise ValidationFailed(ProblemType.UNAUTHORIZED, "acmeIdentifier MUST be critical")
    digest = hashlib.sha256(key_authz.encode()).digest()
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if value != b"\x04\x20" + digest:  # DER OCTET STRING of 32 octets
        raise ValidationFailed(
            ProblemType.INCORRECT_RESPONSE, "acmeIdentifier does not hold the key authorization"
        )


def _unreachable(url: str) -> ValidationFailed:
    """The one problem for every way a fetch can fail once connecting: it names the host
    and not the socket's error, which would tell a closed port from a silent one."""
    return ValidationFailed(
        ProblemType.CONNECTION, f"connection to {urlsplit(url).hostname} failed"
    )


def _redirect_target(base: URL, location: str) -> str:
    """The absolute URL a redirect's Location names; the responder chose it, so it may be
    anything."""
    try:
        return str(base.join(URL(location)))
    except ValueError:
        raise ValidationFailed(
            ProblemType.CONNECTION, f"redirected to {location!r}, which is not a valid URL"
        ) from None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052 §2.1: the well-known prefix


def _embedded(address: _Address) -> list[_Address]:
    """The address, and the IPv4 addresses an IPv6 address stands for."""
    found: list[_Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


@functools.lru_cache(maxsize=8)
def _resolver(resolvers: tuple[str, ...]) -> dns.asyncresolver.Resolver:
    """One resolver per configured list, kept: it holds no state between queries (its
    cache is off), and building one per query was a measurable part of a validation."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    servers: list[str | dns.nameserver.Nameserver] = []
    for text in resolvers:
        hp = parse_host_port(text, "[acme] resolvers")
        servers.append(dns.nameserver.Do53Nameserver(hp.host, hp.port))
    resolver.nameservers = servers
    return resolver


class _Resolver(AbstractResolver):
    """aiohttp resolves host names through the validator (configured DNS, deny list)."""

    def __init__(self, validator: Validator) -> None:
        self._validator = validator

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self._validator.addresses(host)
        except ValidationFailed as exc:
            raise OSError(exc.detail) from exc
        return [
            ResolveResult(
                hostname=host,
                host=str(a),
                port=port,
                family=socket.AF_INET if a.version == 4 else socket.AF_INET6,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for a in addresses
        ]

    async def close(self) -> None:
        return None
