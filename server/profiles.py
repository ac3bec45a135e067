"""The first draft of a certificate: what the profile says, filled in from the request.

``draft_for`` is pure: it copies the profile's fixed choices (issuer, validity, key usage,
extended key usage, certificate policies) and the CSR's subject, SANs and key type. It does
not judge anything. The policy modules that run next (``policies.profiles`` first, by default)
decide whether the requester may have this, and trim the subject and SANs to what the profile
allows.
"""

from __future__ import annotations

from datetime import timedelta

from server.ca.build import key_usage_for
from server.ca.csr import ParsedCSR
from server.config import ProfileConfig
from server.model import CertificateDraft


def draft_for(profile: ProfileConfig, csr: ParsedCSR) -> CertificateDraft:
    """The certificate the profile would give this request, before any policy decides."""
    return CertificateDraft(
        profile=profile.name,
        issuer=profile.issuer,
        subject=csr.subject,
        sans=csr.sans,
        validity=timedelta(days=profile.validity_days),
        key_type=csr.key_type,
        # Only the usages this kind of key can have: RFC 8813, RFC 8410, CA/Browser Forum BR.
        key_usage=key_usage_for(csr.key_type, profile.key_usage),
        extended_key_usage=profile.extended_key_usage,
        certificate_policies=profile.certificate_policies,
    )
