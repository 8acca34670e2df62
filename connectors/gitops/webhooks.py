"""Forge webhooks, read: signatures checked in constant time, and the one thing selfheal wants
from an event: which of its pull requests changed (branch `selfheal/<incident id>[-revert]`).

The event only wakes the waiting remediation, which then asks the forge itself: nothing in a
webhook body is trusted beyond "look again at request N of branch B".
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PullEvent:
    branch: str
    number: int
    #: The forge's action (opened, synchronize, closed, merged, reopened, update…).
    action: str


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(header.removeprefix("sha256=").strip().lower(), _hmac_hex(secret, body))


def gitea_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Gitea-Signature` (Forgejo: `X-Forgejo-Signature`): the hex HMAC-SHA256 of the raw body."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().lower(), _hmac_hex(secret, body))


def gitlab_token_ok(secret: str, header: str | None) -> bool:
    """`X-Gitlab-Token`: GitLab sends the configured secret token as is."""
    return header is not None and hmac.compare_digest(header.encode(), secret.encode())


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def github_event(event: str | None, body: dict[str, Any]) -> PullEvent | None:
    """A `pull_request` event (GitHub, and Gitea/Forgejo, which send the same shape)."""
    if event != "pull_request":
        return None
    pr = body.get("pull_request")
    if not isinstance(pr, dict):
        return None
    head = pr.get("head")
    if not isinstance(head, dict):
        return None
    branch, number = head.get("ref"), _int(pr.get("number"))
    if not isinstance(branch, str) or number is None:
        return None
    action = str(body.get("action") or "")
    if action == "closed" and pr.get("merged") is True:
        action = "merged"
    return PullEvent(branch=branch, number=number, action=action[:40])


def gitlab_event(event: str | None, body: dict[str, Any]) -> PullEvent | None:
    """A merge request event (`X-Gitlab-Event: Merge Request Hook`, `object_kind: merge_request`)."""
    if body.get("object_kind") != "merge_request":
        return None
    attrs = body.get("object_attributes")
    if not isinstance(attrs, dict):
        return None
    branch, number = attrs.get("source_branch"), _int(attrs.get("iid"))
    if not isinstance(branch, str) or number is None:
        return None
    return PullEvent(branch=branch, number=number, action=str(attrs.get("action") or "")[:40])
