"""Jira's outgoing webhook, understood: is it signed by us, and what did which Jira user do?

Pure functions beside the tracker and its settings, so everything Jira-shaped lives in one place.
They read events as Jira Cloud and Data Center really send them: a Cloud comment event carries a
trimmed issue (no labels), a Data Center comment event carries no issue at all (only
`comment.self` names it), Cloud names people by accountId only, Data Center by user name and key.

What they must never do: find the incident from labels in the event (the API asks the tracker),
trust a name the event did not authenticate, or let an edited or deleted comment become a decision
(an edit is made by the editor, not by the comment's author).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from connectors.jira.settings import JiraSettings
from models.incident import DecisionKind
from pages.render import adf_plain_text

#: `.../rest/api/2/issue/10010/comment/10100`: the only place a Data Center comment event names its issue.
_COMMENT_SELF = re.compile(r"/rest/api/(?:2|3|latest)/issue/(?P<issue>[^/]+)/comment/[^/]+/?$")


class EventKind(StrEnum):
    """What happened, as far as decisions go."""

    COMMENT = "comment"  # a new comment (Cloud/DC comment_created, DC issue_commented)
    TRANSITION = "transition"  # a status change (jira:issue_updated with a status changelog item)
    COMMENT_EDITED = "comment_edited"  # never a decision
    COMMENT_DELETED = "comment_deleted"  # never a decision


@dataclass(frozen=True)
class JiraActor:
    """Who did it, by every id this deployment gives (Cloud: accountId; Data Center: name, key)."""

    ids: tuple[str, ...]
    display: str


@dataclass(frozen=True)
class JiraEvent:
    """One webhook event reduced to what selfheal acts on.

    `decision` is set only for a new comment whose first line is `/selfheal approve|reject` and for
    a transition to the approved or rejected status; `dedup` is stable across redeliveries and
    across the two events Data Center sends for one comment.
    """

    kind: EventKind
    issue: str | None
    actor: JiraActor | None
    decision: DecisionKind | None
    reason: str
    dedup: str | None

    @property
    def is_decision(self) -> bool:
        return self.decision is not None


def signature_ok(hmac_secret: str | None, raw: bytes, header: str | None) -> bool:
    """`X-Hub-Signature: sha256=<HMAC-SHA256(secret, raw body)>`, compared in constant time."""
    if not hmac_secret or not header:
        return False
    algo, _, digest = header.partition("=")
    if algo.strip().lower() != "sha256":
        return False
    expected = hmac.new(hmac_secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(digest.strip().lower().encode(), expected.encode())


def url_token_ok(url_token: str | None, given: str | None) -> bool:
    """The separate `?token=` secret, only when one is configured (weaker: URLs end up in logs)."""
    if not url_token or not given:
        return False
    return hmac.compare_digest(given.encode(), url_token.encode())


def delivery_id(identifier: str | None, raw: bytes) -> str:
    """Jira's delivery id (`X-Atlassian-Webhook-Identifier`), else a digest of the body: a redelivery
    of one event maps to one decision."""
    return identifier or hashlib.sha256(raw).hexdigest()[:32]


def read_event(event: dict[str, Any], *, jira: JiraSettings | None) -> JiraEvent | None:
    """What a webhook event means for selfheal, or None when it is nothing to it."""
    name = event.get("webhookEvent")
    comment = _obj(event.get("comment"))
    if name == "comment_created":
        return _new_comment(event, comment)
    if name == "comment_updated":
        return _changed_comment(event, comment, EventKind.COMMENT_EDITED, _obj(comment.get("updateAuthor")))
    if name == "comment_deleted":
        return _changed_comment(event, comment, EventKind.COMMENT_DELETED, None)
    if name != "jira:issue_updated":
        return None
    type_name = event.get("issue_event_type_name")
    if type_name == "issue_commented" and comment:
        return _new_comment(event, comment)
    if type_name == "issue_comment_edited":
        editor = _obj(event.get("user")) or _obj(comment.get("updateAuthor"))
        return _changed_comment(event, comment, EventKind.COMMENT_EDITED, editor)
    if type_name == "issue_comment_deleted":
        return _changed_comment(event, comment, EventKind.COMMENT_DELETED, _obj(event.get("user")))
    return _transition(event, jira)


def _new_comment(event: dict[str, Any], comment: dict[str, Any]) -> JiraEvent | None:
    body = _body_text(comment.get("body"))
    if body is None:
        return None
    first, _, rest = body.strip().partition("\n")
    words = first.split(maxsplit=2)
    if len(words) < 2 or words[0] != "/selfheal" or words[1] not in ("approve", "reject"):
        return None
    reason = " ".join(filter(None, [words[2] if len(words) > 2 else "", rest.strip()]))
    cid = comment.get("id")
    return JiraEvent(
        kind=EventKind.COMMENT,
        issue=_issue_ref(event, comment),
        actor=_actor(_obj(comment.get("author"))),
        decision=DecisionKind(words[1]),
        reason=reason[:10_000],
        dedup=f"comment-{cid}" if isinstance(cid, (str, int)) and str(cid) else None,
    )


def _changed_comment(
    event: dict[str, Any], comment: dict[str, Any], kind: EventKind, who: dict[str, Any] | None
) -> JiraEvent:
    return JiraEvent(
        kind=kind,
        issue=_issue_ref(event, comment),
        actor=_actor(who) if who else None,
        decision=None,
        reason="",
        dedup=None,
    )


def _transition(event: dict[str, Any], jira: JiraSettings | None) -> JiraEvent | None:
    approved = (jira.approved_status if jira else "Approved").casefold()
    rejected = (jira.rejected_status if jira else "Rejected").casefold()
    changelog = _obj(event.get("changelog"))
    for item in _arr(changelog.get("items")):
        if not isinstance(item, dict) or item.get("field") != "status":
            continue
        to = str(item.get("toString") or "")
        kind = {approved: DecisionKind.APPROVE, rejected: DecisionKind.REJECT}.get(to.casefold())
        if kind is None:
            continue
        cid = changelog.get("id")
        return JiraEvent(
            kind=EventKind.TRANSITION,
            issue=_issue_ref(event, {}),
            actor=_actor(_obj(event.get("user"))),
            decision=kind,
            reason=f"Jira transition to {to}",
            dedup=f"changelog-{cid}" if isinstance(cid, (str, int)) and str(cid) else None,
        )
    return None


def _issue_ref(event: dict[str, Any], comment: dict[str, Any]) -> str | None:
    """The issue's key or id from `issue` when Jira sent one, else the id inside `comment.self`."""
    issue = _obj(event.get("issue"))
    for field in ("key", "id"):
        value = issue.get(field)
        if isinstance(value, (str, int)) and str(value):
            return str(value)
    m = _COMMENT_SELF.search(str(comment.get("self") or ""))
    return m.group("issue") if m else None


def _actor(user: dict[str, Any]) -> JiraActor | None:
    """Cloud: the accountId (its only stable id). Data Center: the user name and the user key."""
    ids = tuple(v for k in ("accountId", "name", "key") if isinstance(v := user.get(k), str) and v)
    if not ids:
        return None
    display = user.get("displayName")
    return JiraActor(ids=ids, display=display if isinstance(display, str) and display else ids[0])


def _body_text(body: Any) -> str | None:
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        return adf_plain_text(body)
    return None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _arr(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
