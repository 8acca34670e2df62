"""Payloads of the `draft_playbook` activity: the loop learns from an approved fix that healed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from models.incident import IncidentView


class DraftRequest(BaseModel):
    """Draft a playbook from the incident as it closes (healed by an approved proposal)."""

    #: The closing view: outcome, remediations, investigation and alerts as the store records them.
    view: IncidentView
    #: The alert label naming the service (the first of `incident.service_labels` it carries).
    service_label: str


class DraftResult(BaseModel):
    """What became of the draft, for the timeline."""

    status: Literal["proposed", "refused"]
    name: str = ""
    #: The branch pushed to the playbooks repository ("" when none is configured).
    branch: str = ""
    #: The draft branch's pull request URL ("" without a forge for the playbooks repository).
    pull_request: str = ""
    message: str
