"""Jira's outgoing webhook: HTTP only. Reading what an event means, and checking its signature,
is connectors.jira.webhook's; deciding is the incident service's.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from connectors.jira import webhook
from selfheal.api.auth import client_address
from selfheal.api.body import PayloadTooLarge, read_limited
from selfheal.api.counters import DECISIONS
from selfheal.api.state import get_service, get_settings
from selfheal.auth import Principal, user_for_jira
from selfheal.incidents import IncidentError

router = APIRouter()


@router.post("/api/v1/jira/webhook")
async def jira_webhook(request: Request, token: str | None = None) -> JSONResponse:
    """Jira comment `/selfheal approve|reject` or a transition to the approved/rejected status."""
    settings = get_settings(request)
    secret = settings.tracker.webhook_secret
    if secret is None:
        return JSONResponse(
            status_code=403, content={"error": "Jira webhook disabled: tracker.webhook_secret is not set"}
        )
    try:
        raw = await read_limited(request, settings.max_body_bytes)
    except PayloadTooLarge:
        return JSONResponse(status_code=413, content={"error": "body too large"})
    if not webhook.signature_ok(
        secret.get_secret_value(), raw, request.headers.get("x-hub-signature"), token
    ):
        return JSONResponse(status_code=401, content={"error": "bad or missing Jira webhook signature"})
    try:
        event = json.loads(raw)
    except ValueError:
        return JSONResponse(status_code=422, content={"error": "body is not JSON", "errors": [{"path": "$"}]})
    if not isinstance(event, dict):
        return JSONResponse(
            status_code=422, content={"error": "body must be an object", "errors": [{"path": "$"}]}
        )
    parsed = webhook.parse_event(
        event,
        jira=settings.tracker.jira,
        bot_accounts=settings.tracker.bot_accounts,
        approvers=[u.jira for u in settings.auth.users.values() if u.jira],
    )
    if parsed is None:
        return JSONResponse(status_code=200, content={"status": "ignored"})
    incident_id, decision = parsed
    # The Jira actor as a person of `auth.users` (none: a principal without roles, refused 403).
    principal = user_for_jira(settings.auth, [decision.by]) or Principal(
        name=decision.by, roles=frozenset(), via="jira"
    )
    delivery = webhook.delivery_id(request.headers.get("x-atlassian-webhook-identifier"), raw)
    try:
        view = await get_service(request).decide(
            incident_id, decision, principal, update_id=f"jira-{delivery}", origin=client_address(request)
        )
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
