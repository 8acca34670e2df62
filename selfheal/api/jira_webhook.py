"""Jira's outgoing webhook: HTTP only. What an event means is connectors.jira.webhook's; which
incident an issue belongs to is the tracker's (from the issue as Jira stores it); who the actor is
comes from `auth.users.<name>.jira`; deciding is the incident service's.

Answers: 401 unsigned or wrongly signed; 200 for everything Jira should not retry (`ignored`,
`refused`, `not_awaiting`, `decided`). A refusal is audited and explained on the ticket.
"""

from __future__ import annotations

import asyncio
import json
import re

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from connectors.jira import webhook
from connectors.jira.tracker import JiraTracker
from connectors.jira.webhook import JiraEvent
from models.incident import Decision, IncidentView
from selfheal.api.auth import client_address
from selfheal.api.body import PayloadTooLarge, read_limited
from selfheal.api.counters import DECISIONS
from selfheal.api.state import get_service, get_settings, get_tracker
from selfheal.auth import Principal, user_for_jira
from selfheal.incidents import IncidentError

router = APIRouter()
log = structlog.get_logger("selfheal.audit")
#: `/selfheal approve 3f2a9c1b…`: a first word of hex digits pins the plan shown on the ticket.
_DIGEST = re.compile(r"^([0-9a-f]{8,64})(?:\s+|$)")


@router.post("/api/v1/jira/webhook")
async def jira_webhook(request: Request, token: str | None = None) -> JSONResponse:
    """Jira comment `/selfheal approve|reject` or a transition to the approved/rejected status."""
    settings = get_settings(request)
    tracker_settings = settings.tracker
    secret = tracker_settings.webhook_secret
    url_token = tracker_settings.webhook_url_token
    if settings.tracker.kind != "jira" or (secret is None and url_token is None):
        return JSONResponse(
            status_code=403,
            content={
                "error": "Jira webhook disabled: needs tracker.kind jira and tracker.webhook_secret"
                " (or tracker.webhook_url_token)"
            },
        )
    try:
        raw = await read_limited(request, settings.max_body_bytes)
    except PayloadTooLarge:
        return JSONResponse(status_code=413, content={"error": "body too large"})
    signed = webhook.signature_ok(
        secret.get_secret_value() if secret else None, raw, request.headers.get("x-hub-signature")
    )
    by_url = not signed and webhook.url_token_ok(url_token.get_secret_value() if url_token else None, token)
    if not (signed or by_url):
        return JSONResponse(status_code=401, content={"error": "bad or missing Jira webhook signature"})
    try:
        body = json.loads(raw)
    except ValueError:
        return JSONResponse(status_code=422, content={"error": "body is not JSON", "errors": [{"path": "$"}]})
    if not isinstance(body, dict):
        return JSONResponse(
            status_code=422, content={"error": "body must be an object", "errors": [{"path": "$"}]}
        )
    delivery = webhook.delivery_id(request.headers.get("x-atlassian-webhook-identifier"), raw)
    via = "jira-url-token" if by_url else "jira-hmac"
    where = client_address(request) or None
    event = webhook.read_event(body, jira=tracker_settings.jira)
    if event is None or event.issue is None or event.actor is None:
        return _ignored()
    kind = event.decision
    if set(event.actor.ids) & set(tracker_settings.bot_accounts):
        return _ignored()
    if kind is None:
        # Edits and deletions never decide; say so in the audit trail, with who did it.
        log.info(
            "jira event is not a decision",
            jira_event=event.kind.value,
            issue=event.issue,
            jira_actor=list(event.actor.ids),
            via=via,
            remote=where,
            delivery=delivery,
        )
        return _ignored()
    tracker = get_tracker(request)
    if not isinstance(tracker, JiraTracker):
        return _ignored()
    incident_id = await asyncio.to_thread(tracker.incident_for_issue, event.issue)
    if incident_id is None:
        return _ignored()
    principal = user_for_jira(settings.auth, event.actor.ids)
    if principal is None or not principal.can("approver"):
        why = (
            "no selfheal user has this Jira identity (auth.users.<name>.jira)"
            if principal is None
            else f"selfheal user {principal.name!r} is not an approver"
        )
        log.warning(
            "jira decision refused",
            incident_id=incident_id,
            issue=event.issue,
            decision=kind.value,
            jira_actor=list(event.actor.ids),
            user=principal.name if principal else None,
            reason=why,
            via=via,
            remote=where,
            delivery=delivery,
        )
        DECISIONS.labels(kind.value, "jira", "403").inc()
        await get_service(request).record_refusal(
            incident_id,
            kind,
            by=principal.name if principal else event.actor.display,
            via="jira",
            reason=why,
            dedup=f"jira-{event.dedup or delivery}",
            principal=principal,
            origin=where or "",
            source="jira",
            ticket_key=event.issue,
        )
        return JSONResponse(
            status_code=200, content={"status": "refused", "incident_id": incident_id, "error": why}
        )
    digest, comment = pinned_digest(event.reason)
    decision = Decision(decision=kind, by=principal.name, comment=comment, source="jira", plan_digest=digest)
    log.info(
        "jira decision",
        incident_id=incident_id,
        issue=event.issue,
        decision=decision.decision.value,
        user=principal.name,
        jira_actor=list(event.actor.ids),
        via=via,
        remote=where,
        delivery=delivery,
    )
    try:
        view = await _decide(request, incident_id, decision, principal, _update_id(event, delivery))
    except IncidentError as err:
        DECISIONS.labels(decision.decision.value, "jira", str(err.status_code)).inc()
        if err.status_code == 409:
            return JSONResponse(status_code=200, content={"status": "not_awaiting", "error": err.message})
        raise
    DECISIONS.labels(decision.decision.value, "jira", "accepted").inc()
    return JSONResponse(
        status_code=200,
        content={"status": "decided", "incident_id": view.id, "decision": decision.decision.value},
    )


async def _decide(
    request: Request, incident_id: str, decision: Decision, principal: Principal, update_id: str
) -> IncidentView:
    """The one call into the incident service: `principal` is who Jira authenticated, and the
    decision is recorded in their name; the service checks the role and audits."""
    return await get_service(request).decide(
        incident_id, decision, principal, update_id=update_id, origin=client_address(request)
    )


def _update_id(event: JiraEvent, delivery: str) -> str:
    """One decision per comment or changelog entry, across redeliveries and across the two events
    Data Center sends for one comment; the delivery id only when the event has neither."""
    return f"jira-{event.dedup or delivery}"


def pinned_digest(reason: str) -> tuple[str | None, str]:
    """The plan digest (prefix) a comment's first word pins, and the rest as the comment."""
    m = _DIGEST.match(reason)
    if m is None:
        return None, reason
    return m.group(1), reason[m.end() :]


def _ignored() -> JSONResponse:
    return JSONResponse(status_code=200, content={"status": "ignored"})
