"""The LLM investigator's payloads: its run configuration, the run's dependencies, the model's answer.

Each crosses a Temporal boundary (the config is an activity result the agent workflow reads; the
deps ride along with every tool activity; the answer is the model activity's output type), so they
live in the bottom package with the other payloads, where the workflow sandbox passes them through.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from models.evidence import Evidence
from models.investigation import Hypothesis, ProposedFix


class LlmRunConfig(BaseModel):
    """The non-secret part of the LLM settings, fetched by the workflow from its worker."""

    provider: str
    model: str
    max_requests: int
    max_total_tokens: int
    max_tool_output_chars: int
    redact_emails: bool = False
    repos: list[str] = Field(default_factory=list)


class AgentDeps(BaseModel):
    """The run's dependencies. `evidence` is excluded from serialization: evidence tools run where
    the run runs (workflow code), so it never has to ride along with every activity payload."""

    incident_id: str
    service: str = ""
    alert_start: datetime
    max_tool_output_chars: int = 8000
    redact_emails: bool = False
    evidence: Evidence | None = Field(default=None, exclude=True)


class InvestigationOutput(BaseModel):
    """What the model answers with; `finalize` makes it an `Investigation`."""

    summary: str = Field(max_length=4000, description="Two to five sentences for the on-call engineer.")
    hypotheses: list[Hypothesis] = Field(
        default_factory=list, max_length=10, description="Candidate causes, most likely first."
    )
    proposed_fix: ProposedFix | None = None
    open_questions: list[str] = Field(default_factory=list, max_length=10)
