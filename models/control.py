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


class RunRequest(BaseModel):
    playbook: str
    target: str
    incident_id: str
    max_runs: int
    window_seconds: float
    cooldown_seconds: float
    #: A human approved this run: the global pause (which stops autonomous runs) does not apply.
    approved: bool = False
    #: At most this many granted runs at once per deployment (task queue), each until its incident
    #: releases it; more wait, oldest incident first. 0: no bound (and no release expected).
    max_concurrent: int = Field(default=0, ge=0)
    #: Not a playbook run but the incident's turn to be worked on (evidence, matching, the fix):
    #: only the bound applies, no pause, breaker or cooldown, and nothing is recorded as a run.
    turn: bool = False
    #: When the incident opened: the waiting order.
    opened_at: datetime | None = None
    #: How long a slot is held at most when its release never comes.
    lease_seconds: float = Field(default=3600, gt=0)


class RunGrant(BaseModel):
    allowed: bool
    reason: str = ""
    #: The run holds a slot: its incident signals `release_run` when the run is over.
    slot: bool = False


class RunTicket(BaseModel):
    """A queued request: what to decide, and the task token (base64) of the activity awaiting it."""

    request: RunRequest
    task_token: str = Field(min_length=1)


class RunSlot(BaseModel):
    """A granted run holding one of the bounded slots until its incident releases it."""

    incident_id: str
    #: The lease: a slot whose release never came (the incident terminated) frees itself then.
    until: datetime


class ControlState(BaseModel):
    paused: bool = False
    paused_by: str = ""
    paused_reason: str = ""
    changed_at: datetime | None = None
    runs: dict[str, list[RunRecord]] = Field(default_factory=dict)
    #: Runs in flight under a bound (`RunRequest.max_concurrent`), and the requests waiting for one
    #: of their slots, admitted oldest incident first (approved runs before autonomous ones).
    running: list[RunSlot] = Field(default_factory=list)
    waiting: list[RunTicket] = Field(default_factory=list)


class GrantDelivery(BaseModel):
    task_token: str
    grant: RunGrant


class GrantBatch(BaseModel):
    deliveries: list[GrantDelivery]


class PauseRequest(BaseModel):
    paused: bool
    by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=1000)
