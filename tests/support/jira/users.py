"""Users and authentication."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from tests.support.jira.model import NOT_AUTHENTICATED, JsonDict
from tests.support.jira.server import _HTTPError, _Response


class UsersMixin:
    """Part of `JiraFake`: who exists and who calls (basic auth or a Bearer token), user JSON."""

    def account_id(self, user: str) -> str:
        """The Cloud-style accountId the fake gives `user`."""
        return "5b10a2844c20165700ede" + hashlib.sha1(user.encode()).hexdigest()[:8]

    def add_person(self, user: str) -> None:
        """Make a user exist (assignable, searchable) without giving them a login."""
        with self._lock:
            self._people.add(user)

    def _find_user(self, ident: str) -> str | None:
        """The user a REST body names: by accountId on Cloud, by name (or key) on Server/DC."""
        for user in self._people:
            if (self.account_id(user) == ident) if self.cloud else (user == ident):
                return user
        return None

    def _user_json(self, user: str) -> JsonDict:
        """A user as each deployment shows one. Cloud: accountId only (no name or key since GDPR;
        the e-mail hidden, as profile visibility has it by default). Server/DC: name, key, e-mail."""
        base = self._base()
        common: JsonDict = {
            "avatarUrls": {
                size: f"{base}/secure/useravatar?size={size}" for size in ("48x48", "24x24", "16x16", "32x32")
            },
            "displayName": user.replace(".", " ").replace("_", " ").title(),
            "active": True,
            "timeZone": "UTC",
        }
        if self.cloud:
            account = self.account_id(user)
            return {
                "self": f"{base}/rest/api/2/user?accountId={account}",
                "accountId": account,
                **common,
                "accountType": "atlassian",
            }
        return {
            "self": f"{base}/rest/api/2/user?username={quote(user)}",
            "name": user,
            "key": user,
            "emailAddress": f"{user}@example.com",
            **common,
        }

    def _authenticate(self, headers: Mapping[str, str]) -> str | None:
        """The user behind the request; None when anonymous. Bad credentials are a 401 right away."""
        auth = headers.get("authorization")
        if not auth:
            return None
        scheme, _, value = auth.partition(" ")
        user: str | None = None
        if scheme.lower() == "basic":
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                name, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
                if name in self._tokens and hmac.compare_digest(self._tokens[name], secret):
                    user = name
        elif scheme.lower() == "bearer":
            user = next((n for n, t in self._tokens.items() if hmac.compare_digest(t, value.strip())), None)
        if user is None:
            raise _HTTPError(
                401,
                {"errorMessages": [NOT_AUTHENTICATED], "errors": {}},
                {
                    "WWW-Authenticate": 'Basic realm="protected-area"',
                    "X-Seraph-LoginReason": "AUTHENTICATED_FAILED",
                },
            )
        return user

    def _h_myself(self, user: str, **_: Any) -> _Response:
        return self._json(
            200,
            {
                **self._user_json(user),
                "groups": {"size": 1, "items": []},
                "applicationRoles": {"size": 1, "items": []},
                "expand": "groups,applicationRoles",
            },
        )
