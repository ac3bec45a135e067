"""Naming a key in a PKCS#11 token: a label, or a ``pkcs11:`` URI (RFC 7512).

A configured key is either a plain label (``CKA_LABEL``) or a URI such as
``pkcs11:token=certforge;object=issuing-ca;type=private`` or ``pkcs11:id=%01%02``.
``parse_key_name`` turns either into a ``PKCS11URI``; anything it cannot use exactly is a
``ConfigError`` of one line naming what is wrong.

Deliberately refused, although RFC 7512 §2.3 defines them:

- the query attributes ``pin-value`` and ``pin-source``: the issue keeps the PIN out of the
  configuration file, and one pool of sessions logs in once for every key, so a PIN per key
  could not be honoured anyway; the PIN is configured once, from an environment variable or
  a file.
- ``module-name`` and ``module-path``: the module is configured once, for every key.
- ``type`` other than ``private``: certforge looks up the private key and finds its public
  key next to it.
- slot and library attributes (``slot-id``, ``library-version``...) and vendor attributes:
  a key certforge cannot match exactly is better refused at start than guessed at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from server.errors import ConfigError

SCHEME = "pkcs11:"

# RFC 7512 §2.3's path attributes that name a token or an object, and what certforge keeps.
_TOKEN_ATTRIBUTES = ("token", "manufacturer", "model", "serial")
_OBJECT_ATTRIBUTES = ("object", "id", "type")
_REFUSED_QUERY = {
    "pin-value": "the PIN is configured once, from an environment variable or a file",
    "pin-source": "the PIN is configured once, from an environment variable or a file",
    "module-name": "the PKCS#11 module is configured once, for every key",
    "module-path": "the PKCS#11 module is configured once, for every key",
}
# RFC 7512 §2.3: a value is pchars (unreserved, pct-encoded and a few sub-delims) and may
# not hold the separators ';', '?', '&', '=' unescaped; a '%' must start an escape.
_VALUE = re.compile(r"(?:[A-Za-z0-9\-._~:\[\]@!$'()*+,/|]|%[0-9A-Fa-f]{2})*\Z")


@dataclass(frozen=True, slots=True)
class PKCS11URI:
    """A private key in a token: by label, by ``CKA_ID``, or both (both must match).

    ``token``, ``manufacturer``, ``model`` and ``serial``, when given, must match the
    configured token: they are checked, not used to pick one."""

    object: str | None = None  # CKA_LABEL
    id: bytes | None = None  # CKA_ID
    token: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None

    def __str__(self) -> str:
        parts = []
        for name in (*_TOKEN_ATTRIBUTES, "object"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={_escape(value.encode())}")
        if self.id is not None:
            parts.append(f"id={_escape(self.id, every_byte=True)}")
        return SCHEME + ";".join([*parts, "type=private"])


def parse_key_name(name: str) -> PKCS11URI:
    """A configured key: a ``pkcs11:`` URI, or else a plain label."""
    if name.startswith(SCHEME):
        return parse_pkcs11_uri(name)
    if not name:
        raise ConfigError("a PKCS#11 key label is empty")
    return PKCS11URI(object=name)


def parse_pkcs11_uri(uri: str) -> PKCS11URI:
    if not uri.startswith(SCHEME):
        raise ConfigError(f"{uri!r} is not a pkcs11: URI")
    path, _, query = uri.removeprefix(SCHEME).partition("?")
    if "#" in uri:
        raise ConfigError(f"{uri!r}: a pkcs11: URI has no fragment")
    for name, _ in _attributes(uri, query, "&"):
        reason = _REFUSED_QUERY.get(name, "certforge uses no query attributes")
        raise ConfigError(f"{uri!r}: {name} is not accepted here ({reason})")
    values: dict[str, bytes] = {}
    for name, raw in _attributes(uri, path, ";"):
        if name not in (*_TOKEN_ATTRIBUTES, *_OBJECT_ATTRIBUTES):
            raise ConfigError(f"{uri!r}: certforge cannot match the attribute {name!r}")
        if name in values:
            raise ConfigError(f"{uri!r}: {name} is given twice")
        values[name] = raw
    kind = values.pop("type", b"private")
    if kind != b"private":
        raise ConfigError(f"{uri!r}: type must be private (certforge names private keys)")
    if "object" not in values and "id" not in values:
        raise ConfigError(f"{uri!r}: names no key (give object= or id=)")
    if values.get("id") == b"" or values.get("object") == b"":
        raise ConfigError(f"{uri!r}: an empty object= or id= would match too many keys")
    key_id = values.pop("id", None)
    texts = {name: _text(uri, name, raw) for name, raw in values.items()}
    return PKCS11URI(id=key_id, **texts)


def _attributes(uri: str, part: str, separator: str) -> list[tuple[str, bytes]]:
    if not part:
        return []
    found = []
    for item in part.split(separator):
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise ConfigError(f"{uri!r}: {item!r} is not name=value")
        if not _VALUE.match(value):
            raise ConfigError(f"{uri!r}: the value of {name} needs percent-encoding")
        found.append((name, unquote_to_bytes(value)))
    return found


def _text(uri: str, name: str, raw: bytes) -> str:
    # RFC 7512 §2.3: textual attributes are UTF-8 before percent-encoding.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{uri!r}: {name} is not UTF-8 text") from None


def _escape(value: bytes, *, every_byte: bool = False) -> str:
    unreserved = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
    return "".join(chr(b) if b in unreserved and not every_byte else f"%{b:02X}" for b in value)
