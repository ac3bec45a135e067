"""A published CRL, as the publisher keeps it and the HTTP listener serves it."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PublishedCRL:
    issuer: str  # the CA's name ("root" for the root)
    number: int
    this_update: datetime
    next_update: datetime
    entries: int
    der: bytes
    shard: int | None = None  # the partition, for a partitioned CRL
    base_number: int | None = None  # the base CRL's number, for a delta CRL
    etag: str = field(default="", compare=False)  # computed once: a CRL may be 50 MB

    def __post_init__(self) -> None:
        if not self.etag:
            tag = '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'
            object.__setattr__(self, "etag", tag)

    @property
    def key(self) -> str:
        """What ``CRLPublisher.latest`` knows it by: ``issuer``, ``issuer/shard`` or
        ``issuer/delta``."""
        if self.base_number is not None:
            return f"{self.issuer}/delta"
        return self.issuer if self.shard is None else f"{self.issuer}/{self.shard}"

    def pem(self) -> str:
        b64 = base64.b64encode(self.der).decode()
        lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
        return "-----BEGIN X509 CRL-----\n" + "\n".join(lines) + "\n-----END X509 CRL-----\n"
