"""Incidents: the list (Temporal visibility), one incident's view, its ticket page and the
closed incidents like it, and a human's decision on it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError

from models import ids
from models.evidence import SimilarIncident
from models.incident import Decision, DecisionKind, IncidentSummary, IncidentView
from pages.redact import redact
from pages.render import render_markdown
from pages.ticket import build_page
from selfheal.api.auth import Viewer, client_address, require
from selfheal.api.counters import DECISIONS
from selfheal.api.state import get_service, get_settings, get_shared
from selfheal.auth import Principal
from selfheal.incidents import IncidentError
from workflows.incident_rules import workflow_url

router = APIRouter()

#: How the decider authenticated, as the timeline and the ticket say it ("Approved by X via …").
_SOURCES = {"token": "API token", "oidc": "OIDC"}


class IncidentList(BaseModel):
    incidents: list[IncidentSummary]


class IncidentPage(BaseModel):
    incident_id: str
    format: str = "markdown"
    #: The ticket's page (`pages.ticket.build_page`) in Markdown; every alert-derived string escaped.
    page: str


class SimilarList(BaseModel):
    incident_id: str
    similar: list[SimilarIncident]


class DecisionRequest(BaseModel):
    decision: DecisionKind
    #: Optional: the decider is whoever authenticated; a different name here is refused (403).
    by: str | None = Field(default=None, min_length=1, max_length=200)
    comment: str = Field(default="", max_length=10_000)
    #: The digest of the plan shown (`proposal.digest`, or a prefix of at least 8 hex digits): the
    #: approval then runs only that plan; one that changed since is refused (409).
    plan_digest: str | None = Field(default=None, pattern=r"^[0-9a-f]{8,64}$")


@router.get("/api/v1/incidents", response_model=IncidentList)
async def list_incidents(
    request: Request,
    _: Viewer,
    status: str | None = Query(default=None, description="firing | resolved"),
    stage: str | None = Query(default=None),
    service_name: str | None = Query(default=None, alias="service"),
    alertname: str | None = Query(default=None),
    limit: int = Query(default=100, ge=1, le=1000),
) -> IncidentList:
    """Incidents newest first, read from Temporal visibility."""
    items = await get_service(request).list(
        status=status, stage=stage, service=service_name, alertname=alertname, limit=limit
    )
    return IncidentList(incidents=items)


@router.get("/api/v1/incidents/{incident_id}", response_model=IncidentView)
async def get_incident(request: Request, incident_id: str, _: Viewer) -> IncidentView:
    return await get_service(request).get(incident_id)


@router.get("/api/v1/incidents/{incident_id}/page", response_model=IncidentPage)
async def get_page(request: Request, incident_id: str, _: Viewer) -> IncidentPage:
    """The incident's ticket page as it is now, in Markdown (the page the tracker gets)."""
    view = await get_service(request).get(incident_id)
    settings = get_settings(request)
    wf_url = workflow_url(
        settings.temporal.ui_url, settings.temporal.namespace, ids.workflow_id_for_group(view.group_id)
    )
    return IncidentPage(incident_id=view.id, page=render_markdown(build_page(view, wf_url)))


@router.get("/api/v1/incidents/{incident_id}/similar", response_model=SimilarList)
async def get_similar(
    request: Request, incident_id: str, _: Viewer, limit: int = Query(default=5, ge=1, le=50)
) -> SimilarList:
    """Closed incidents most like this one, best first, from the incident store (as the evidence
    ranks them: labels and BM25 over their text), with their outcome and the fix that worked."""
    view = await get_service(request).get(incident_id)
    store = get_shared(request).incident_store
    try:
        found = await run_in_threadpool(lambda: store().similar(view, limit=limit, exclude_id=view.id))
    except SQLAlchemyError as err:
        detail = f"incident store unavailable: {redact(str(err))}"[:300]
        raise HTTPException(status_code=503, detail=detail) from err
    return SimilarList(incident_id=view.id, similar=found)


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
    decision = Decision(
        decision=body.decision,
        by=principal.name,
        comment=body.comment,
        source=via,
        plan_digest=body.plan_digest,
    )
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
