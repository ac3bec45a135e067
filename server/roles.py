"""Who may do what through the admin API: each role's permissions, in one table.

Every admin handler asks for exactly one ``Permission`` (``protocols.rest.auth.require``)
before it reads its body or changes anything, so a role acting beyond itself gets 403 and
nothing happens. A token holds one or more roles and may do what any of them permits. The
README's "Tokens and roles" table is this table in words.

Enrollment is not here: a token of any role may enroll through the REST API, and the profile
decides whether a token's request is issued at once (``policies.profiles.decide_approval``:
requester and administrator tokens) or held for approval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from server.model import Role


class Permission(StrEnum):
    READ = "read"  # requests, certificates, events, EST users: everything but tokens
    READ_TOKENS = "read_tokens"  # the token list: names, roles, times; no secret
    MANAGE_TOKENS = "manage_tokens"  # create, revoke, rotate admin.token
    DECIDE = "decide"  # approve or deny a pending request
    REVOKE = "revoke"  # revoke a certificate, release one from hold
    PUBLISH_CRL = "publish_crl"
    ENROLLMENT_SECRETS = "enrollment_secrets"  # SCEP challenges, EST users, ACME EAB
    RENEWAL = "renewal"  # ask ACME clients to renew (RFC 9773 renewal marks)
    MANAGE_CAS = "manage_cas"  # CA operations: the administrator's alone


PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    Role.ADMINISTRATOR: frozenset(Permission),
    Role.OPERATOR: frozenset(
        {
            Permission.READ,
            Permission.DECIDE,
            Permission.REVOKE,
            Permission.PUBLISH_CRL,
            Permission.ENROLLMENT_SECRETS,
            Permission.RENEWAL,
        }
    ),
    # Auditors review who holds access too, so they read the token list (never a secret).
    Role.AUDITOR: frozenset({Permission.READ, Permission.READ_TOKENS}),
    Role.REQUESTER: frozenset(),
}


def permits(roles: Iterable[Role], permission: Permission) -> bool:
    return any(permission in PERMISSIONS[role] for role in roles)


def roles_permitting(permission: Permission) -> list[Role]:
    return [role for role in Role if permission in PERMISSIONS[role]]
