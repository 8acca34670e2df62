"""The run gate's messages and state: what the control workflow decides on and remembers.

They live outside `workflows/` so the workflow sandbox passes them through instead of
re-creating every pydantic class for each workflow instance it builds.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class RunRecord(BaseModel):
    at: datetime
    target: str
    incident_id: str


class ControlState(BaseModel):
    paused: bool = False
    paused_by: str = ""
    paused_reason: str = ""
    changed_at: datetime | None = None
    runs: dict[str, list[RunRecord]] = Field(default_factory=dict)


class RunRequest(BaseModel):
    playbook: str
    target: str
    incident_id: str
    max_runs: int
    window_seconds: float
    cooldown_seconds: float
    #: A human approved this run: the global pause (which stops autonomous runs) does not apply.
    approved: bool = False


class RunGrant(BaseModel):
    allowed: bool
    reason: str = ""


class RunTicket(BaseModel):
    """A queued request: what to decide, and the task token (base64) of the activity awaiting it."""

    request: RunRequest
    task_token: str = Field(min_length=1)


class GrantDelivery(BaseModel):
    task_token: str
    grant: RunGrant


class GrantBatch(BaseModel):
    deliveries: list[GrantDelivery]


class PauseRequest(BaseModel):
    paused: bool
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)
