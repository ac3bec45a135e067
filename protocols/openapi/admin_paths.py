"""The OpenAPI document's admin operations beyond the inventory: decisions on requests and
certificates (``protocols/admin/handlers.py``), enrollment secrets (``protocols/admin/est.py``,
``protocols/acme/admin.py``) and tokens (``protocols/admin/tokens.py``)."""

from __future__ import annotations

from protocols.openapi.paths import REQUEST_ID, SERIAL, admin, answer, json_body, path_param
from protocols.openapi.schemas import JSON, TIME, headers, obj, ref, values
from server.challenges import MAX_LIFETIME
from server.model import RevocationReason, Role


def decision_paths() -> JSON:
    reason = json_body(
        obj({"reason": {"type": "string", "maxLength": 500}}, required=[]),
    )
    revocable = [r for r in values(RevocationReason) if r != RevocationReason.REMOVE_FROM_CRL]
    revocation = json_body(
        obj(
            {
                "reason": {
                    "enum": revocable,
                    "default": "unspecified",
                    "description": "an RFC 5280 reason name, any case",
                },
                "invalidity_date": TIME | {"type": ["string", "null"]},
            },
            required=[],
        )
    )
    decided = {"200": answer("The request after the decision.", ref("Request"))}
    changed = {"200": answer("The certificate after the change.", ref("Certificate"))}
    return {
        "/admin/requests/{request_id}": {
            "get": admin(
                "A request in full, with its events",
                "Requests",
                {"200": answer("The request.", ref("RequestWithEvents"))},
                404,
                parameters=[REQUEST_ID],
            )
        },
        "/admin/requests/{request_id}/approve": {
            "post": admin(
                "Approve a pending request: it is signed now",
                "Requests",
                decided,
                400,
                404,
                409,
                description="409 unless pending. 400 when no certificate can be built from "
                "the request after all (it is then failed).",
                parameters=[REQUEST_ID],
            )
        },
        "/admin/requests/{request_id}/deny": {
            "post": admin(
                "Deny a pending request",
                "Requests",
                decided,
                400,
                404,
                409,
                413,
                parameters=[REQUEST_ID],
                requestBody=reason,
            )
        },
        "/admin/certificates/{serial}": {
            "get": admin(
                "A certificate in full, with its events",
                "Certificates",
                {"200": answer("The certificate.", ref("CertificateWithEvents"))},
                400,
                404,
                parameters=[SERIAL],
            )
        },
        "/admin/certificates/{serial}/revoke": {
            "post": admin(
                "Revoke a certificate",
                "Certificates",
                changed,
                400,
                404,
                409,
                413,
                description="409 if it is revoked already (a hold may be made permanent).",
                parameters=[SERIAL],
                requestBody=revocation,
            )
        },
        "/admin/certificates/{serial}/unrevoke": {
            "post": admin(
                "Release a certificate from certificateHold",
                "Certificates",
                changed,
                400,
                404,
                409,
                description="409 unless it is on hold.",
                parameters=[SERIAL],
            )
        },
    }


_NAME = "^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$"  # server/tokens.py's _NAME
_DURATION = "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$"  # server/config.py's parse_duration


def secret_paths() -> JSON:
    seconds = int(MAX_LIFETIME.total_seconds())
    return {
        "/admin/crl/publish": {
            "post": admin(
                "Publish fresh CRLs now",
                "Revocation",
                {"200": answer("The CRLs published.", ref("CRLList"))},
                400,
                404,
                413,
                description="Every CA's, or one CA's (404 if none has that name); delta "
                "CRLs with delta: true.",
                requestBody=json_body(
                    obj({"issuer": {"type": "string"}, "delta": {"type": "boolean"}}, [])
                ),
            )
        },
        "/admin/scep/challenges": {
            "post": admin(
                "A one-time SCEP (and EST) challenge password",
                "Enrollment secrets",
                {"201": answer("The challenge.", ref("Challenge"))},
                400,
                413,
                requestBody=json_body(
                    obj(
                        {
                            "profile": {"type": "string", "minLength": 1},
                            "lifetime_seconds": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": seconds,
                            },
                        },
                        [],
                    )
                ),
            )
        },
        "/admin/cmp/secrets": {
            "post": admin(
                "A one-time CMP shared secret (MAC protection)",
                "Enrollment secrets",
                {
                    "201": answer(
                        "The reference (senderKID) and secret, shown once.", ref("CMPSecret")
                    )
                },
                400,
                404,
                413,
                requestBody=json_body(obj({"profile": {"type": "string", "minLength": 1}}, [])),
            )
        },
        "/admin/est/users": {
            "get": admin(
                "The EST users (never their passwords)",
                "Enrollment secrets",
                {"200": answer("The users.", ref("ESTUserList"))},
            ),
            "post": admin(
                "Create an EST user",
                "Enrollment secrets",
                {"201": answer("The user and its password, shown once.", ref("NewESTUser"))},
                400,
                409,
                413,
                requestBody=json_body(
                    obj({"name": {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"}}),
                    required=True,
                ),
            ),
        },
        "/admin/est/users/{name}": {
            "delete": admin(
                "Remove an EST user",
                "Enrollment secrets",
                {"204": {"description": "Removed.", "headers": headers()}},
                400,
                404,
                parameters=[path_param("name", "the user's name")],
            )
        },
        "/admin/acme/eab": {
            "post": admin(
                "New ACME External Account Binding credentials",
                "ACME",
                {"201": answer("The credentials.", ref("EABCredentials"))},
            )
        },
        "/admin/acme/renewal": {
            "post": admin(
                "Mark certificates for renewal now (ACME ARI, RFC 9773)",
                "ACME",
                {"201": answer("The mark.", ref("RenewalMark"))},
                400,
                404,
                413,
                description="One certificate, every certificate of a key, or every "
                "certificate of an issuing CA (404 if there is none of that name).",
                requestBody=json_body(
                    {
                        "oneOf": [
                            obj({"serial": {"type": "string", "pattern": "^[0-9A-Fa-f:]+$"}}),
                            obj({"key_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}),
                            obj({"issuer": {"type": "string", "minLength": 1}}),
                        ]
                    },
                    required=True,
                ),
            )
        },
    }


def token_paths() -> JSON:
    return {
        "/admin/tokens": {
            "get": admin(
                "Every token, revoked and expired ones too (never a secret)",
                "Tokens",
                {"200": answer("The tokens.", ref("TokenList"))},
            ),
            "post": admin(
                "Create a token",
                "Tokens",
                {"201": answer("The token and its secret, shown once.", ref("NewToken"))},
                400,
                413,
                requestBody=json_body(
                    obj(
                        {
                            "name": {"type": "string", "pattern": _NAME},
                            "roles": {
                                "type": "array",
                                "items": {"enum": values(Role)},
                                "minItems": 1,
                                "default": ["requester"],
                            },
                            "expires_in": {
                                "type": "string",
                                "pattern": _DURATION,
                                "description": "90m, 12h, 30d, 1d12h; at most 3650d",
                            },
                        },
                        ["name"],
                    ),
                    required=True,
                ),
            ),
        },
        "/admin/tokens/{ref}/revoke": {
            "post": admin(
                "Revoke a token by its id or its name",
                "Tokens",
                {"200": answer("The revoked token.", ref("Token"))},
                404,
                409,
                description="409 if it is revoked already, or several active tokens have "
                "the name. Revoking the token the request carries is allowed.",
                parameters=[path_param("ref", "the token's id, or the name of an active one")],
            )
        },
        "/admin/tokens/bootstrap/rotate": {
            "post": admin(
                "A new admin.token in the answering server's data directory",
                "Tokens",
                {
                    "200": answer(
                        "The new token (its secret only in the file).", ref("BootstrapRotation")
                    )
                },
                description="The token the file held is revoked.",
            )
        },
    }
