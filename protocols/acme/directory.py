"""The directory (RFC 8555 §7.1.1), with RFC 9773's renewalInfo and the ACME profiles
draft's ``meta.profiles``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from protocols.acme.context import ACME
from protocols.acme.identifiers import acme_profiles
from server.config import ProfileConfig

_EKU_WORDS = {"1.3.6.1.5.5.7.3.1": "serverAuth", "1.3.6.1.5.5.7.3.2": "clientAuth"}


def describe(profile: ProfileConfig) -> str:
    ekus = ", ".join(_EKU_WORDS.get(e, e) for e in profile.extended_key_usage) or "no EKU"
    approval = "; issued after an administrator's approval" if profile.approval == "manual" else ""
    return f"{profile.validity_days}-day certificates ({ekus}){approval}"


def directory_json(acme: ACME) -> dict[str, Any]:
    urls, settings = acme.urls, acme.settings
    meta: dict[str, Any] = {
        "externalAccountRequired": settings.eab_required,
        "profiles": {name: describe(p) for name, p in acme_profiles(acme.config).items()},
    }
    if settings.terms_of_service:
        meta["termsOfService"] = settings.terms_of_service
    if settings.website:
        meta["website"] = settings.website
    if settings.caa_identities:
        meta["caaIdentities"] = list(settings.caa_identities)
    return {
        "newNonce": urls.new_nonce,
        "newAccount": urls.new_account,
        "newOrder": urls.new_order,
        "revokeCert": urls.revoke_cert,
        "keyChange": urls.key_change,
        "renewalInfo": urls.renewal_info,
        "meta": meta,
    }


async def directory(request: web.Request) -> web.Response:
    return web.json_response(directory_json(ACME.of(request)))
