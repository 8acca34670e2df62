"""Who may call the API: the webhook token as a bearer, or the basic-auth pair, as a dependency.

Every comparison is constant time. The Jira webhook does not use this: Jira signs with its own
secret (connectors.jira.webhook).
"""

from __future__ import annotations

import base64
import hmac

from fastapi import HTTPException, Request

from selfheal.api.state import get_settings
from selfheal.settings import Settings


def credentials_ok(settings: Settings, header: str | None) -> bool:
    """Bearer token or basic auth, each compared in constant time."""
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


def require_token(request: Request) -> None:
    """FastAPI dependency: 401 with a `WWW-Authenticate` challenge unless the credentials match."""
    if not credentials_ok(get_settings(request), request.headers.get("authorization")):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid credentials (Authorization: Bearer <webhook token>)",
            headers={"WWW-Authenticate": 'Bearer realm="selfheal"'},
        )
