"""Autonomous remediation's switch: its state (paused, recent runs), pause and resume."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from models.control import ControlState, PauseRequest
from selfheal import control
from selfheal.api.auth import Viewer, client_address, refuse_other_name, require
from selfheal.api.state import get_client, get_settings
from selfheal.auth import Principal

router = APIRouter()


class PauseBody(BaseModel):
    #: Optional: the caller is whoever authenticated; a different name here is refused (403).
    by: str | None = Field(default=None, min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)


@router.get("/api/v1/remediation", response_model=ControlState)
async def remediation_state(request: Request, _: Viewer) -> ControlState:
    """Whether autonomous remediation is paused, and recent playbook runs (circuit breaker)."""
    return await control.get_state(get_client(request), get_settings(request))


@router.post("/api/v1/remediation/pause", response_model=ControlState)
async def pause(
    request: Request,
    body: PauseBody,
    principal: Annotated[Principal, Depends(require("approver", action="pause"))],
) -> ControlState:
    """Stop autonomous fixes globally: every match is escalated to humans instead (approvers)."""
    return await _set(
        request, principal, PauseRequest(paused=True, by=principal.name, reason=body.reason), body
    )


@router.post("/api/v1/remediation/resume", response_model=ControlState)
async def resume(
    request: Request,
    body: PauseBody,
    principal: Annotated[Principal, Depends(require("approver", action="resume"))],
) -> ControlState:
    """Restart autonomous fixes (approvers)."""
    return await _set(
        request, principal, PauseRequest(paused=False, by=principal.name, reason=body.reason), body
    )


async def _set(request: Request, principal: Principal, req: PauseRequest, body: PauseBody) -> ControlState:
    action = "pause" if req.paused else "resume"
    refuse_other_name(request, principal, body.by, action)
    return await control.set_paused(
        get_client(request), get_settings(request), req, principal, origin=client_address(request)
    )
