"""The `/ui` session: a signed cookie naming the signed-in user and carrying the form (CSRF) token.

The cookie holds a user name, a random CSRF token and a fingerprint of the user's configured token
digest, signed with HMAC-SHA256 (itsdangerous) and valid for `MAX_AGE_SECONDS` from sign-in. Roles
are read from `auth.users` on every request, never from the cookie, so removing a user or a role
takes effect at once, and replacing a user's token ends the sessions it opened. The cookie
is HttpOnly, SameSite=Strict, scoped to `/ui`, and Secure when the public URL is https. Every POST
carries the session's CSRF token in a hidden field; signing in issues a new one (no fixation).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from selfheal.auth import Principal, effective_roles
from selfheal.settings import Settings

COOKIE = "selfheal_ui"
#: A session lasts a working day; sign in again after.
MAX_AGE_SECONDS = 12 * 3600
#: Generated under the data dir when `ui_secret` is not set.
KEY_FILE = "ui-secret"


@dataclass(frozen=True)
class Session:
    """Who is signed in (None: nobody) and the token every form of this session must carry."""

    user: Principal | None
    csrf: str
    #: True when the browser has no valid cookie yet: the response must set one.
    new: bool = False
    #: Which configured token the user signed in with (`token_binding`); "" when nobody is signed in.
    binding: str = ""

    def csrf_ok(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(self.csrf.encode(), (submitted or "").encode())


def load_secret(settings: Settings) -> str:
    """`ui_secret`, else the key in `<data_dir>/ui-secret`, created once (mode 0600, atomically)."""
    if settings.ui_secret is not None and settings.ui_secret.get_secret_value():
        return settings.ui_secret.get_secret_value()
    path = settings.data_dir / KEY_FILE
    existing = _read_secret(path)
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{KEY_FILE}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_urlsafe(48) + "\n")
    try:
        # link() fails if another process won the race: then both use the one already there.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink()
    secret = _read_secret(path)
    if not secret:
        raise RuntimeError(f"{path}: empty UI session key")
    return secret


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def token_binding(token_sha256: str) -> str:
    """A fingerprint of a user's configured token digest: a new token ends the old sessions."""
    return hashlib.sha256(b"selfheal-ui-session:" + token_sha256.encode()).hexdigest()[:32]


class SessionCodec:
    """Reads and writes the session cookie for one app (one key, one Secure flag)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secure = settings.public_url.lower().startswith("https://")
        self._serializer = URLSafeTimedSerializer(
            load_secret(settings),
            salt="selfheal-ui-session",
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def read(self, request: Request) -> Session:
        """The request's session; a fresh anonymous one when the cookie is absent, forged or expired."""
        data: Any = None
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self._serializer.loads(raw, max_age=MAX_AGE_SECONDS)
            except BadSignature:
                data = None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str) or len(data["c"]) < 32:
            return Session(user=None, csrf=secrets.token_urlsafe(32), new=True)
        binding = data["t"] if isinstance(data.get("t"), str) else ""
        user = self._user(data.get("u"), binding)
        return Session(user=user, csrf=data["c"], binding=binding if user else "")

    def _user(self, name: Any, binding: str) -> Principal | None:
        """The named user as configured now: gone, without a token, or with another token than the
        one signed in with, is nobody."""
        if not isinstance(name, str):
            return None
        user = self.settings.auth.users.get(name)
        if user is None or not user.token_sha256:
            return None
        if not hmac.compare_digest(binding.encode(), token_binding(user.token_sha256).encode()):
            return None
        return Principal(name=name, roles=effective_roles(user.roles), via="token")

    def write(self, response: Response, session: Session) -> None:
        value = self._serializer.dumps(
            {"u": session.user.name if session.user else None, "c": session.csrf, "t": session.binding}
        )
        response.set_cookie(
            COOKIE,
            value,
            max_age=MAX_AGE_SECONDS,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )

    def signed_in(self, user: Principal) -> Session:
        """The session after a successful sign-in: a new CSRF token, never the anonymous one."""
        digest = self.settings.auth.users[user.name].token_sha256 or ""
        return Session(user=user, csrf=secrets.token_urlsafe(32), new=True, binding=token_binding(digest))

    @staticmethod
    def signed_out() -> Session:
        return Session(user=None, csrf=secrets.token_urlsafe(32), new=True)
