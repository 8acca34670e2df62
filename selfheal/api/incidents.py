"""Incidents: the list (Temporal visibility), one incident's view, and a human's decision on it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from models.incident import Decision, DecisionKind, IncidentSummary, IncidentView
from selfheal.api.auth import Viewer, client_address, require
from selfheal.api.counters import DECISIONS
from selfheal.api.state import get_service
from selfheal.auth import Principal
from selfheal.incidents import IncidentError

router = APIRouter()

#: How the decider authenticated, as the timeline and the ticket say it ("Approved by X via …").
_SOURCES = {"token": "API token", "oidc": "OIDC"}


class IncidentList(BaseModel):
    incidents: list[IncidentSummary]


class DecisionRequest(BaseModel):
    decision: DecisionKind
    #: Optional: the decider is whoever authenticated; a different name here is refused (403).
    by: str | None = Field(default=None, min_length=1, max_length=200)
    comment: str = Field(default="", max_length=10_000)


@router.get("/api/v1/incidents", response_model=IncidentList)
async def list_incidents(
    request: Request,
    _: Viewer,
    status: str | None = Query(default=None, description="firing | resolved"),
    stage: str | None = Query(default=None),
    service_name: str | None = Query(default=None, alias="service"),
    limit: int = Query(default=100, ge=1, le=1000),
) -> IncidentList:
    """Incidents newest first, read from Temporal visibility."""
    items = await get_service(request).list(status=status, stage=stage, service=service_name, limit=limit)
    return IncidentList(incidents=items)


@router.get("/api/v1/incidents/{incident_id}", response_model=IncidentView)
async def get_incident(request: Request, incident_id: str, _: Viewer) -> IncidentView:
    return await get_service(request).get(incident_id)


@router.post("/api/v1/incidents/{incident_id}/decision", response_model=IncidentView)
async def post_decision(
    request: Request,
    incident_id: str,
    body: DecisionRequest,
    principal: Annotated[Principal, Depends(require("viewer", action="decision"))],
) -> IncidentView:
    """Approve or reject as the authenticated approver; answered once the workflow accepted the
    decision (Temporal update). Anyone authenticated reaches the service, so a refusal (not an
    approver, or a `by` naming someone else) is recorded where humans look: audit, timeline, ticket."""
    service = get_service(request)
    via = _SOURCES.get(principal.via, principal.via)
    idem = request.headers.get("idempotency-key")
    if body.by is not None and body.by != principal.name:
        reason = f"authenticated as {principal.name!r}: cannot act as {body.by!r}"
        DECISIONS.labels(body.decision.value, "api", "403").inc()
        await service.record_refusal(
            incident_id,
            body.decision,
            by=principal.name,
            via=via,
            reason=reason,
            dedup=f"api-{idem}" if idem else uuid.uuid4().hex,
            principal=principal,
            origin=client_address(request),
            source=via,
        )
        raise HTTPException(status_code=403, detail=f"by: {reason}")
    decision = Decision(decision=body.decision, by=principal.name, comment=body.comment, source=via)
    try:
        view = await service.decide(
            incident_id,
            decision,
            principal,
            update_id=f"api-{idem}" if idem else None,
            origin=client_address(request),
        )
    except IncidentError as err:
        DECISIONS.labels(body.decision.value, "api", str(err.status_code)).inc()
        raise
    DECISIONS.labels(body.decision.value, "api", "accepted").inc()
    return view
