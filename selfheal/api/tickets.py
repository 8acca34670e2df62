"""The local tracker's tickets over HTTP, for deployments without Jira (the embedded default)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from selfheal.api.auth import Viewer
from selfheal.api.state import get_settings, get_tracker

router = APIRouter()


@router.get("/api/v1/tickets/{key}")
async def get_local_ticket(request: Request, key: str, _: Viewer) -> dict[str, Any]:
    """The local tracker's ticket (embedded default), with its comments."""
    settings = get_settings(request)
    if settings.tracker.kind != "local":
        raise HTTPException(status_code=404, detail="tickets live in Jira in this deployment")
    from connectors.base import TrackerError
    from connectors.local_tracker import LocalTracker

    tracker = get_tracker(request)
    if not isinstance(tracker, LocalTracker):
        raise HTTPException(status_code=404, detail="tickets live in Jira in this deployment")
    try:
        return await run_in_threadpool(tracker.get, key)
    except TrackerError as err:
        raise HTTPException(status_code=404, detail=str(err)) from err
