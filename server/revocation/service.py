"""Revocation's parts started together: the CRL publisher, the OCSP signing certificates and
the OCSP responder, with the background tasks that keep them fresh."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from server.config import Config
from server.engine import Engine
from server.revocation.ocsp import OCSPResponder
from server.revocation.publisher import CRLPublisher
from server.revocation.signers import OCSPSigners


@dataclass(frozen=True, slots=True)
class Revocation:
    crls: CRLPublisher
    signers: OCSPSigners
    ocsp: OCSPResponder

    @classmethod
    async def start(
        cls,
        config: Config,
        engine: Engine,
        *,
        passphrase: bytes | None,
        notify: Callable[[], None],
    ) -> Revocation:
        """Publish every CRL and make sure every OCSP signer exists before serving."""
        crls = CRLPublisher(
            store=engine.store,
            cas=engine.cas,
            config=config.crl,
            clock=engine.clock,
            notify=notify,
            directory=config.server.data_dir / "crl",
        )
        signers = OCSPSigners(config=config, engine=engine, passphrase=passphrase)
        await signers.ensure()
        responder = OCSPResponder(
            store=engine.store,
            issuers=engine.cas.issuers,
            signers=signers,
            config=config.ocsp,
            clock=engine.clock,
        )
        engine.on_status_change(responder.invalidate)
        await crls.publish_all()
        return cls(crls, signers, responder)

    def background(self, *, primary: bool = True) -> list[Coroutine[Any, Any, None]]:
        """What keeps revocation fresh. Every worker renews its own OCSP signer; only the
        primary worker re-issues CRLs on schedule, which the other workers of this server
        serve from the shared CRL directory (``crlfiles.py``)."""
        jobs = [self.signers.renew_forever()]
        if primary:
            jobs.append(self.crls.run())
        return jobs
