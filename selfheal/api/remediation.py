"""Autonomous remediation's switch: its state (paused, recent runs), pause and resume."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from models.control import ControlState, PauseRequest
from selfheal import control
from selfheal.api.auth import require_token
from selfheal.api.state import get_client, get_settings

router = APIRouter()


class PauseBody(BaseModel):
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)


@router.get("/api/v1/remediation", response_model=ControlState)
async def remediation_state(request: Request, _: None = Depends(require_token)) -> ControlState:
    """Whether autonomous remediation is paused, and recent playbook runs (circuit breaker)."""
    return await control.get_state(get_client(request), get_settings(request))


@router.post("/api/v1/remediation/pause", response_model=ControlState)
async def pause(request: Request, body: PauseBody, _: None = Depends(require_token)) -> ControlState:
    """Stop autonomous fixes globally: every match is escalated to humans instead."""
    req = PauseRequest(paused=True, by=body.by, reason=body.reason)
    return await control.set_paused(get_client(request), get_settings(request), req)


@router.post("/api/v1/remediation/resume", response_model=ControlState)
async def resume(request: Request, body: PauseBody, _: None = Depends(require_token)) -> ControlState:
    """Restart autonomous fixes (approvers only)."""
    req = PauseRequest(paused=False, by=body.by, reason=body.reason)
    return await control.set_paused(get_client(request), get_settings(request), req)
