"""Which playbook would handle an alert, and the steps it would run (`selfheal playbooks
match/plan` over HTTP), for alerts in the body or for an incident's own alerts. Nothing runs.

Playbooks load on each request, as the worker loads them, so a merged playbook shows at once.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from models.incident import WebhookAlert
from playbooks.loader import PlaybookError
from selfheal.api.auth import Viewer
from selfheal.api.state import get_service, get_settings
from selfheal.playbook_match import MAX_ALERTS, AlertPlaybooks, PlaybookMatches, incident_alerts, match_alerts
from selfheal.settings import Settings

router = APIRouter()


class MatchRequest(BaseModel):
    alerts: list[WebhookAlert] = Field(min_length=1, max_length=MAX_ALERTS)


async def _match(
    settings: Settings, alerts: list[WebhookAlert], incident_id: str = ""
) -> list[AlertPlaybooks]:
    try:
        return await run_in_threadpool(match_alerts, settings, alerts, incident_id)
    except PlaybookError as err:
        raise HTTPException(
            status_code=503, detail=f"playbooks do not load: {'; '.join(err.errors[:3])}"[:1000]
        ) from err


@router.post("/api/v1/playbooks/match", response_model=PlaybookMatches)
async def match(request: Request, body: MatchRequest, _: Viewer) -> PlaybookMatches:
    """For each alert (as Alertmanager sends them): the playbooks that apply with their rendered
    plans, in precedence order, or why none applies."""
    return PlaybookMatches(alerts=await _match(get_settings(request), body.alerts))


@router.get("/api/v1/incidents/{incident_id}/playbooks", response_model=PlaybookMatches)
async def match_incident(request: Request, incident_id: str, _: Viewer) -> PlaybookMatches:
    """The same for each of the incident's alerts, rendered for this incident."""
    view = await get_service(request).get(incident_id)
    found = await _match(get_settings(request), incident_alerts(view), view.id)
    return PlaybookMatches(incident_id=view.id, alerts=found)
