"""The investigator contract: what any investigator (builtin or LLM) hands back about an incident.

An `Investigation` is data. It is rendered escaped on the ticket and shown to humans; nothing in
it is ever executed or used as a template. A proposed fix is either a reference to a loaded
playbook (validated by the caller against the playbooks that actually match), a revert of a
suspect change, or a patch; the last two become a remediation plan that runs only once an
approver approves exactly that plan (`playbooks/proposal.py`).

Evidence references (`Hypothesis.evidence`) name what supports a claim so a reader can check
it: `metrics:<series name>`, `logs:<n>` (line index in the logs section), `traces:<trace id>`,
`changes:<repo>@<short sha>`, `similar:<incident id>`, `diagnose:<check name>`,
`affected_users`, `alert:<alertname>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

InvestigatorKind = Literal["builtin", "llm"]
#: A configured repository's name (as in `remediation.repos`), and a commit id in it.
REPO_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
COMMIT_PATTERN = r"^[0-9a-f]{7,64}$"


class Hypothesis(BaseModel):
    """One candidate cause, with what supports it and how sure the investigator is."""

    title: str = Field(max_length=300)
    detail: str = Field(default="", max_length=4000)
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list, max_length=20)


class RevertRef(BaseModel):
    """Which change to undo: a commit of a repository by its configured name. Data only: selfheal
    plans a revert of it only after checking the repository is configured and the commit is on its
    base branch, and runs it only after an approver's decision."""

    repo: str = Field(pattern=REPO_NAME_PATTERN)
    sha: str = Field(pattern=COMMIT_PATTERN)


class ProposedFix(BaseModel):
    """A fix for humans (or the matched playbook's policy) to act on; never run by the investigator."""

    #: `manual`: steps for a human, described in `rationale` (e.g. a past incident's fix).
    kind: Literal["playbook", "patch", "manual", "none"]
    #: For `playbook`: the name of a playbook that matched this incident.
    playbook: str | None = None
    #: For `patch`: the repository (as configured) and a unified diff, for human approval only.
    repo: str | None = None
    patch: str | None = Field(default=None, max_length=20_000)
    rationale: str = Field(default="", max_length=4000)
    #: Where the fix came from, e.g. `similar:<incident id>` when a past fix is reused.
    source: str = ""
    #: For `manual` and `patch`: the suspect change to revert, when it is a commit of a repository
    #: (full sha); selfheal then plans the revert with the service's test/deploy/verify defaults.
    revert: RevertRef | None = None

    def runnable_kind(self) -> Literal["revert", "patch"] | None:
        """What of this proposal selfheal can plan and, once approved, run: a patch (with its repo
        and diff), a revert of the suspect commit, or nothing (a playbook is run as such)."""
        if self.kind == "patch" and self.patch and self.repo:
            return "patch"
        if self.kind in ("manual", "patch") and self.revert is not None:
            return "revert"
        return None


class DiagnoseResult(BaseModel):
    """A playbook `diagnose` check as the investigator ran it."""

    playbook: str
    name: str
    query: str
    condition: str
    value: float | None = None
    passed: bool | None = None
    error: str = ""


class DiagnosticResult(BaseModel):
    """A playbook `diagnostics` entry as read for the ticket: information, never a condition."""

    playbook: str
    name: str
    #: The PromQL query, or `events of <Kind> <namespace>/<name>`.
    source: str
    lines: list[str] = Field(default_factory=list, max_length=20)
    error: str = ""


#: How an agent run ended: answered, gave no usable answer, or was stopped by a budget.
RunOutcome = Literal["ok", "failed", "budget_exhausted"]
#: Which limit stopped a run ("" when none did).
BudgetKind = Literal["", "requests", "tokens", "tool_calls", "incident_cost", "day_cost", "wall_time"]


class EditReads(BaseModel):
    """One file the coding agent edited, with the files it had read before that edit (in order).

    How much an agent looked before it wrote is a quality signal: an edit to a file it never read
    is a guess. The investigator edits nothing, so its runs have none."""

    path: str
    read_before: list[str] = Field(default_factory=list)


class AgentRun(BaseModel):
    """What one LLM agent run did and cost: the same record for the investigator and the coding agent.

    Recorded on the incident (its ticket page) and in the incident store, where `/metrics` and the
    per-day budget read it. `cost_usd` is None when the model has no price in the price table:
    the cost is then unknown, not zero."""

    agent: Literal["investigator", "coding"] = "investigator"
    model: str
    outcome: RunOutcome
    requests: int = 0
    #: Tool calls that ran, by tool name (the agent's output tool is not one).
    tool_calls: dict[str, int] = Field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    started_at: datetime | None = None
    wall_seconds: float = 0.0
    stopped_by: BudgetKind = ""
    #: Coding agent only: each edit and the files read before it.
    edits: list[EditReads] = Field(default_factory=list)

    @property
    def tool_call_total(self) -> int:
        return sum(self.tool_calls.values())


class Investigation(BaseModel):
    investigator: str
    status: RunOutcome = "ok"
    summary: str = Field(max_length=4000)
    #: Ranked, most likely first.
    hypotheses: list[Hypothesis] = Field(default_factory=list, max_length=10)
    matched_playbook: str | None = None
    proposed_fix: ProposedFix | None = None
    open_questions: list[str] = Field(default_factory=list, max_length=10)
    diagnose: list[DiagnoseResult] = Field(default_factory=list)
    #: The matched playbook's `diagnostics` (values, events) for humans; they decide nothing.
    diagnostics: list[DiagnosticResult] = Field(default_factory=list)
    started_at: datetime | None = None
    duration_seconds: float = 0.0
    #: Model usage for LLM investigators (requests, input/output tokens); empty for builtin.
    usage: dict[str, int] = Field(default_factory=dict)
    message: str = ""
    #: The LLM run behind this investigation (None for the builtin investigator).
    run: AgentRun | None = None
