"""The LLM investigator's payloads: its run configuration, the run's dependencies, the model's answer.

Each crosses a Temporal boundary (the config is an activity result the agent workflow reads; the
deps ride along with every tool activity; the answer is the model activity's output type), so they
live in the bottom package with the other payloads, where the workflow sandbox passes them through.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from models.evidence import Evidence
from models.investigation import AgentRun, Hypothesis, ProposedFix
from models.settings import Section


class LlmPrice(Section):
    """A model's list price in USD per million tokens (`investigation.llm.prices.<model>`)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1_000_000


class LlmRunConfig(BaseModel):
    """The non-secret part of the LLM settings, fetched by the workflow from its worker.

    Fields added later have defaults, so a config recorded in an older history still loads."""

    provider: str
    model: str
    max_requests: int
    max_total_tokens: int
    max_tool_output_chars: int
    redact_emails: bool = False
    repos: list[str] = Field(default_factory=list)
    #: Tool calls per run; the cap on a runaway loop of cheap requests.
    max_tool_calls: int | None = None
    #: The configured model's price (None: not in the price table, so its cost is unknown).
    price: LlmPrice | None = None
    #: USD budgets: all LLM runs of one incident, and of all incidents in one UTC day.
    max_cost_per_incident: float | None = None
    max_cost_per_day: float | None = None

    @property
    def has_cost_budget(self) -> bool:
        return self.max_cost_per_incident is not None or self.max_cost_per_day is not None


class LlmSpendRequest(BaseModel):
    """Whose spend to read: one incident's, and every incident's since `day_start` (UTC midnight)."""

    incident_id: str
    day_start: datetime


class LlmSpend(BaseModel):
    """What earlier LLM runs recorded in the incident store cost (priced runs only), in USD."""

    incident_cost: float = 0.0
    day_cost: float = 0.0
    day_runs: int = 0


class AgentRunRecord(BaseModel):
    """One finished agent run for the incident store, keyed by `run_id` (recording it twice is one row)."""

    run_id: str
    incident_id: str
    run: AgentRun


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
