"""Jira's outgoing webhook, understood: is it signed by our secret, and is it a decision?

Pure functions beside the tracker and its settings, so everything Jira-shaped lives in one place
and the API's Jira route only reads the body, calls these and hands a decision to the incident
service. A comment counts when its first line is `/selfheal approve|reject`; a transition counts
when it lands on the approved or rejected status; our own bot accounts never decide.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from connectors.jira.settings import JiraSettings
from models import ids
from models.incident import Decision, DecisionKind


def signature_ok(secret: str, raw: bytes, header: str | None, token: str | None) -> bool:
    """HMAC-SHA256 of the body in `X-Hub-Signature`, else the secret as `?token=`; constant time."""
    if header:
        algo, _, digest = header.partition("=")
        if algo.lower() != "sha256":
            return False
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(digest.strip().lower(), expected)
    if token:
        return hmac.compare_digest(token.encode(), secret.encode())
    return False


def delivery_id(identifier: str | None, raw: bytes) -> str:
    """Jira's delivery id (`X-Atlassian-Webhook-Identifier`), else a digest of the body: a redelivery
    of one event maps to one decision."""
    return identifier or hashlib.sha256(raw).hexdigest()[:32]


def parse_event(
    event: dict[str, Any],
    *,
    jira: JiraSettings | None,
    bot_accounts: Iterable[str],
    approvers: Iterable[str],
) -> tuple[str, Decision] | None:
    """Turn a Jira webhook event into (incident id, decision), or None when it is not one.

    Comments count only when their first line starts with `/selfheal approve|reject`; the author's
    identity is checked against the approvers later, by the service, like any other decision.
    """
    fields = _obj(_obj(event.get("issue")).get("fields"))
    labels = _arr(fields.get("labels"))
    incident_id = next(
        (
            lab.removeprefix("selfheal-")
            for lab in labels
            if isinstance(lab, str) and ids.parse_incident_id(lab.removeprefix("selfheal-"))
        ),
        None,
    )
    if incident_id is None:
        return None
    bots = set(bot_accounts)
    approver_ids = list(approvers)
    comment = event.get("comment")
    if isinstance(comment, dict) and isinstance(comment.get("body"), str):
        user_ids = _user_ids(comment.get("author")) or _user_ids(event.get("user"))
        if not user_ids or bots.intersection(user_ids):
            return None
        first, _, rest = comment["body"].strip().partition("\n")
        words = first.split(maxsplit=2)
        if len(words) >= 2 and words[0] == "/selfheal" and words[1] in ("approve", "reject"):
            reason = " ".join(filter(None, [words[2] if len(words) > 2 else "", rest.strip()]))
            return incident_id, Decision(
                decision=DecisionKind(words[1]),
                by=_pick_user(user_ids, approver_ids),
                comment=reason[:10_000],
                source="jira",
            )
        return None
    items = _arr(_obj(event.get("changelog")).get("items"))
    approved = (jira.approved_status if jira else "Approved").lower()
    rejected = (jira.rejected_status if jira else "Rejected").lower()
    for item in items:
        if not isinstance(item, dict) or item.get("field") != "status":
            continue
        to = str(item.get("toString") or "").lower()
        kind = DecisionKind.APPROVE if to == approved else DecisionKind.REJECT if to == rejected else None
        if kind is None:
            continue
        user_ids = _user_ids(event.get("user"))
        if not user_ids or bots.intersection(user_ids):
            return None
        return incident_id, Decision(
            decision=kind,
            by=_pick_user(user_ids, approver_ids),
            comment=f"Jira transition to {item.get('toString')}",
            source="jira",
        )
    return None


def _user_ids(user: Any) -> list[str]:
    """Every identity Jira gives for a user: Server names and keys, Cloud account ids, e-mail."""
    if not isinstance(user, dict):
        return []
    return [str(user[k]) for k in ("name", "accountId", "emailAddress", "key") if user.get(k)]


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _arr(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pick_user(user_ids: list[str], approvers: list[str]) -> str:
    """The identity that matches an approver, else the first one (which will then be refused)."""
    return next((i for i in user_ids if i in approvers), user_ids[0])
