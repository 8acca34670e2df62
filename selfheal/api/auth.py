"""Who is calling: a person (API token or OIDC bearer) with roles, or Alertmanager (webhook token).

The two never mix. The webhook token, which sits in Alertmanager's config file, authenticates
`POST /api/v1/alerts` and nothing else; every other route wants a person and a role, so a
decision is always credited to whoever authenticated. Every comparison is constant time. The Jira
webhook does not use this: Jira signs with its own secret (connectors.jira.webhook).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request

from selfheal.api.state import get_settings
from selfheal.audit import audit
from selfheal.auth import (
    USER_NAME,
    AuthSettings,
    OidcSettings,
    Principal,
    Role,
    effective_roles,
    user_for_token,
)
from selfheal.settings import Settings

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="selfheal"'}


def credentials_ok(settings: Settings, header: str | None) -> bool:
    """The webhook's credentials: its bearer token or the basic-auth pair, in constant time."""
    if not header:
        return False
    scheme, _, value = header.partition(" ")
    value = value.strip()
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    if scheme.lower() == "bearer" and token:
        return hmac.compare_digest(value.encode(), token.encode())
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok = False
        if settings.webhook_basic_user and settings.webhook_basic_password:
            ok = hmac.compare_digest(
                user.encode(), settings.webhook_basic_user.encode()
            ) & hmac.compare_digest(
                password.encode(), settings.webhook_basic_password.get_secret_value().encode()
            )
        if token and hmac.compare_digest(password.encode(), token.encode()):
            ok = True
        return ok
    return False


def require_webhook(request: Request) -> None:
    """FastAPI dependency for `POST /api/v1/alerts`: 401 with a challenge unless the webhook's
    credentials match. People's tokens are not accepted here: Alertmanager posts alerts."""
    if not credentials_ok(get_settings(request), request.headers.get("authorization")):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid credentials (Authorization: Bearer <webhook token>)",
            headers=_CHALLENGE,
        )


def client_address(request: Request) -> str:
    """Where a request came from, for the audit trail (the peer; no proxy header is trusted)."""
    return request.client.host if request.client else ""


class OidcVerifier:
    """Checks OIDC bearer tokens against the issuer's JWKS (fetched and cached by PyJWKClient)."""

    def __init__(self, oidc: OidcSettings, users: AuthSettings) -> None:
        self.oidc = oidc
        self.auth = users
        self.jwks = jwt.PyJWKClient(oidc.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    async def principal(self, token: str) -> Principal:
        """The person a valid token names; 401 for a bad token, 503 when the JWKS cannot be read."""
        try:
            key = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as err:
            raise HTTPException(
                status_code=503, detail=f"cannot read the OIDC provider's keys (auth.oidc.jwks_url): {err}"
            ) from err
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as err:
            raise _unauthenticated(f"invalid OIDC token: {err}") from err
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=self.oidc.algorithms,
                audience=self.oidc.audience,
                issuer=self.oidc.issuer,
                leeway=self.oidc.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as err:
            raise _unauthenticated(f"invalid OIDC token: {err}") from err
        name = claims.get(self.oidc.user_claim)
        if not isinstance(name, str) or not name:
            raise _unauthenticated(f"OIDC token has no {self.oidc.user_claim!r} claim")
        if not USER_NAME.match(name):
            # The name goes into the timeline, the ticket and the audit trail: a user name, not prose.
            raise _unauthenticated(
                f"OIDC claim {self.oidc.user_claim!r}: not a user name (letters, digits, _.@-)"
            )
        roles: list[str] = []
        user = self.auth.users.get(name)
        if user is not None:
            roles += user.roles
        groups = claims.get(self.oidc.roles_claim)
        if isinstance(groups, str):
            groups = [groups]
        if isinstance(groups, list):
            for group in groups:
                if isinstance(group, str):
                    roles += self.oidc.role_map.get(group, [])
        return Principal(name=name, roles=effective_roles(roles), via="oidc")


def _unauthenticated(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers=_CHALLENGE)


def _verifier(request: Request) -> OidcVerifier | None:
    """One verifier per app (its JWKS cache lives as long as the app)."""
    settings = get_settings(request)
    if settings.auth.oidc is None:
        return None
    verifier: OidcVerifier | None = getattr(request.app.state, "oidc", None)
    if verifier is None:
        verifier = OidcVerifier(settings.auth.oidc, settings.auth)
        request.app.state.oidc = verifier
    return verifier


async def authenticate(request: Request) -> Principal:
    """The person behind `Authorization: Bearer <token>`: a user's API token or an OIDC JWT.

    401 (with a challenge) when there is none or it is unknown; 403 for the webhook's credentials,
    which only post alerts."""
    settings = get_settings(request)
    header = request.headers.get("authorization")
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        principal = user_for_token(settings.auth, value)
        if principal is not None:
            return principal
        verifier = _verifier(request)
        if verifier is not None and value.count(".") == 2:
            return await verifier.principal(value)
    if credentials_ok(settings, header):
        raise HTTPException(
            status_code=403,
            detail="the Alertmanager webhook token only posts alerts;"
            " use a personal API token (selfheal token create NAME) or an OIDC token",
        )
    raise _unauthenticated(
        "missing or invalid credentials (Authorization: Bearer <API token>; see selfheal token create)"
    )


def require(role: Role, *, action: str | None = None) -> Callable[[Request], Awaitable[Principal]]:
    """FastAPI dependency: the authenticated person, 403 unless they hold `role`. With `action`,
    a refusal is audited (decisions, pause and resume)."""

    async def dependency(request: Request) -> Principal:
        try:
            principal = await authenticate(request)
        except HTTPException as err:
            if action:
                audit(
                    action,
                    None,
                    client_address(request),
                    "refused",
                    status=err.status_code,
                    reason=str(err.detail),
                    path=request.url.path,
                )
            raise
        if not principal.can(role):
            reason = f"user {principal.name!r} is not {'an' if role[0] in 'aeiou' else 'a'} {role}"
            if action:
                audit(
                    action,
                    principal,
                    client_address(request),
                    "refused",
                    status=403,
                    reason=reason,
                    path=request.url.path,
                )
            raise HTTPException(status_code=403, detail=reason)
        return principal

    return dependency


def refuse_other_name(
    request: Request, principal: Principal, named: str | None, action: str, **fields: Any
) -> None:
    """403 (audited) when a body names someone other than the authenticated caller: nobody acts
    in another's name. Naming oneself, or no one, is fine."""
    if named is not None and named != principal.name:
        reason = f"authenticated as {principal.name!r}: cannot act as {named!r}"
        audit(action, principal, client_address(request), "refused", status=403, reason=reason, **fields)
        raise HTTPException(status_code=403, detail=f"by: {reason}")


#: Reads: incidents, tickets, remediation state.
Viewer = Annotated[Principal, Depends(require("viewer"))]
