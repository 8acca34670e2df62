"""Forge webhooks, read: signatures checked in constant time, and the one thing selfheal wants
from an event: which of its pull requests changed (branch `selfheal/<incident id>[-revert]`).

The event only wakes the waiting remediation, which then asks the forge itself: nothing in a
webhook body is trusted beyond "look again at request N of branch B".

GitHub and Gitea/Forgejo may deliver as `application/x-www-form-urlencoded` (GitHub's API default
for a new webhook, `config.content_type: form`): the JSON is then the `payload` field. GitHub
signs the body as sent; Gitea signs the JSON itself (services/webhook/deliver.go, `body =
[]byte(t.PayloadContent)` whatever the content type).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs


@dataclass(frozen=True)
class PullEvent:
    branch: str
    number: int
    #: The forge's action (opened, synchronize, closed, merged, reopened, update…).
    action: str


FORM = "application/x-www-form-urlencoded"


def json_body(content_type: str | None, raw: bytes) -> bytes:
    """The JSON a delivery carries: the body itself, or a form delivery's `payload` field (empty
    when a form has none, which then fails the signature and the JSON reading)."""
    if (content_type or "").split(";", 1)[0].strip().lower() != FORM:
        return raw
    try:
        fields = parse_qs(raw.decode("ascii"), strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return b""
    payload = fields.get("payload") or [""]
    return payload[0].encode()


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(header.removeprefix("sha256=").strip().lower(), _hmac_hex(secret, body))


def gitea_signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """`X-Gitea-Signature` (Forgejo: `X-Forgejo-Signature`): the hex HMAC-SHA256, no prefix, of the
    JSON payload (`json_body`: the raw body of a JSON delivery)."""
    if not header:
        return False
    return hmac.compare_digest(header.strip().lower(), _hmac_hex(secret, body))


def gitlab_token_ok(secret: str, header: str | None) -> bool:
    """`X-Gitlab-Token`: GitLab sends the configured secret token as is."""
    return header is not None and hmac.compare_digest(header.encode(), secret.encode())


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def github_event(event: str | None, body: dict[str, Any]) -> PullEvent | None:
    """A `pull_request` event (GitHub, and Gitea/Forgejo, which send the same shape: a merge is
    `action: closed` with `pull_request.merged: true`). Anything else (`ping`, a test `push`,
    reviews, checks) is None: ignored."""
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
    """A merge request event (`X-Gitlab-Event: Merge Request Hook`, `object_kind: merge_request`;
    a merge is `object_attributes.action: merge`). Read from the body, whose `object_kind` GitLab
    always sets (a System Hook carries the same body); anything else is None: ignored."""
    if body.get("object_kind") != "merge_request":
        return None
    attrs = body.get("object_attributes")
    if not isinstance(attrs, dict):
        return None
    branch, number = attrs.get("source_branch"), _int(attrs.get("iid"))
    if not isinstance(branch, str) or number is None:
        return None
    return PullEvent(branch=branch, number=number, action=str(attrs.get("action") or "")[:40])
