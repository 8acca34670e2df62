"""Who people are and what they may do: users with roles and their identity in each channel.

People are configured once (`auth.users`), each with roles and, per channel, the identity that
channel authenticates: a personal API token (stored only as its SHA-256), a Jira account (Cloud
accountId or Data Center username). A decision is credited to the authenticated user, never to a
name the caller typed. The Alertmanager webhook token is not a user: it may post alerts, nothing else.

Roles nest: `admin` ⊃ `approver` ⊃ `viewer` (read). Approvers decide and resume; admins also manage.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, field_validator

from models.settings import Section

Role = Literal["viewer", "approver", "admin"]

#: What each role may do, including the roles it contains.
_IMPLIED: dict[str, frozenset[str]] = {
    "viewer": frozenset({"viewer"}),
    "approver": frozenset({"viewer", "approver"}),
    "admin": frozenset({"viewer", "approver", "admin"}),
}
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
#: User names as they appear in the audit trail, the timeline and `--as`.
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


def _viewer() -> list[Role]:
    return ["viewer"]


class UserSettings(Section):
    """One person: roles, and their identity in each channel that can authenticate them."""

    roles: list[Role] = Field(default_factory=_viewer, min_length=1)
    #: SHA-256 (hex) of the user's API token; `selfheal token create NAME` makes a token and this line.
    token_sha256: str | None = None
    #: Jira Cloud accountId, or Data Center username (or user key), whose comments and transitions
    #: count as this user's.
    jira: str | None = Field(default=None, min_length=1)

    @field_validator("token_sha256")
    @classmethod
    def _hex(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not _SHA256_HEX.match(value):
            raise ValueError("must be the 64-character SHA-256 hex digest of the token")
        return value


class OidcSettings(Section):
    """Bearer tokens issued by an OpenID Connect provider, checked against its JWKS."""

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str = Field(min_length=1)
    #: The claim naming the user (as in `auth.users`, or anyone when `roles_claim` grants roles).
    user_claim: str = "preferred_username"
    #: A claim listing group or role names, mapped to selfheal roles by `role_map`.
    roles_claim: str = "groups"
    role_map: dict[str, list[Role]] = Field(default_factory=dict)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    leeway_seconds: float = Field(default=30, ge=0, le=600)


class AuthSettings(Section):
    """`auth:` — the people who may read and decide, and how they authenticate."""

    users: dict[str, UserSettings] = Field(default_factory=dict)
    oidc: OidcSettings | None = None

    @field_validator("users")
    @classmethod
    def _names(cls, users: dict[str, UserSettings]) -> dict[str, UserSettings]:
        for name in users:
            if not USER_NAME.match(name):
                raise ValueError(f"user name {name!r}: letters, digits and _.@- only, at most 100")
        jira_ids = [u.jira for u in users.values() if u.jira]
        if len(jira_ids) != len(set(jira_ids)):
            raise ValueError("two users share one jira identity")
        return users


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: who, with which roles, proven how (`token`, `oidc`, `jira`, …)."""

    name: str
    roles: frozenset[str]
    via: str

    def can(self, role: Role) -> bool:
        return role in self.roles


def effective_roles(roles: Iterable[str]) -> frozenset[str]:
    """The roles a list grants, with the ones they contain."""
    out: set[str] = set()
    for role in roles:
        out |= _IMPLIED.get(role, frozenset())
    return frozenset(out)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh API token (256 bits, URL-safe)."""
    return "shu_" + secrets.token_urlsafe(32)


def user_for_token(auth: AuthSettings, token: str) -> Principal | None:
    """The user whose token this is, comparing digests in constant time over every user."""
    digest = token_sha256(token).encode()
    found: Principal | None = None
    for name, user in auth.users.items():
        if user.token_sha256 and hmac.compare_digest(digest, user.token_sha256.encode()):
            found = Principal(name=name, roles=effective_roles(user.roles), via="token")
    return found


def user_for_jira(auth: AuthSettings, actor_ids: Iterable[str]) -> Principal | None:
    """The user a Jira actor is (any of the ids Jira sent for them: accountId, name or key)."""
    ids = {i for i in actor_ids if i}
    for name, user in auth.users.items():
        if user.jira and user.jira in ids:
            return Principal(name=name, roles=effective_roles(user.roles), via="jira")
    return None
