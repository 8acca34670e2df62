"""The coding agent's payloads: its run configuration, its workspace, the model's answer, its result.

The coding agent drafts a patch (with a test) in a fresh worktree of the service's repository when
no revert applies. Everything here crosses a Temporal boundary: the configuration and the
workspace are activity results the coding workflow reads, the deps ride with every tool activity,
the answer is the model activity's output, and the result goes into the incident's view, its
ticket page and, as a patch, the proposal humans approve. The model's answer is data only: its
summary is shown escaped and never executed; the patch is what `git diff` says the worktree holds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from models.agent import LlmPrice
from models.investigation import AgentRun
from models.plan import CommandAction

#: The largest patch a proposal carries (`ProposedFix.patch`); a bigger draft is not minimal.
MAX_PATCH_CHARS = 20_000
#: Characters of the final test output kept for the ticket (its tail: where the summary is).
MAX_TEST_OUTPUT_CHARS = 6_000


class CodingRunConfig(BaseModel):
    """The non-secret part of `investigation.coding_agent`, fetched by the workflow from its worker."""

    enabled: bool = False
    model: str = ""
    max_steps: int = 20
    max_tokens: int = 200_000
    max_seconds: float = 600
    max_tool_calls: int = 60
    max_tool_output_chars: int = 12_000
    redact_emails: bool = False
    price: LlmPrice | None = None
    max_cost_per_incident: float | None = None
    max_cost_per_day: float | None = None

    @property
    def has_cost_budget(self) -> bool:
        return self.max_cost_per_incident is not None or self.max_cost_per_day is not None


class CodingWorkspace(BaseModel):
    """A fresh worktree of the service's repository on the worker's disk and the test commands the
    agent may run in it (the service's `test` steps, rendered); or, with no `worktree`, why not."""

    repo: str = ""
    worktree: str = ""
    base_ref: str = ""
    tests: list[CommandAction] = Field(default_factory=list)
    reason: str = ""


class CodingDeps(BaseModel):
    """What each of the agent's tool activities gets: where the worktree is and what the tests are.
    Nothing in here comes from the model."""

    incident_id: str
    repo: str
    worktree: str
    tests: list[CommandAction] = Field(default_factory=list)
    max_tool_output_chars: int = 12_000
    redact_emails: bool = False


class CodingOutput(BaseModel):
    """What the model answers with once it is done; data for the ticket, never a command."""

    summary: str = Field(
        max_length=4000,
        description="For the reviewer: the cause found in the code, what you changed and why, and"
        " which test shows it (two to eight sentences).",
    )
    tests: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="Paths of the test files you added or changed.",
    )


class CodingFinishRequest(BaseModel):
    """Collect the draft from the workspace: its diff and a last test run; then remove it."""

    incident_id: str
    repo: str
    worktree: str
    tests: list[CommandAction] = Field(default_factory=list)
    #: The files the agent edited or wrote (what the patch may contain; test artefacts are not).
    paths: list[str] = Field(default_factory=list)


class CodingDraft(BaseModel):
    """What the worktree holds after the agent: `git diff` against the base and the tests' verdict."""

    patch: str = ""
    files: list[str] = Field(default_factory=list)
    #: None when no test command is configured (the draft is then not proposed).
    tests_passed: bool | None = None
    #: Redacted and cut to its tail.
    test_output: str = ""
    #: Why the draft cannot be a proposal (too large, touches what a patch may not), "" when it can.
    problem: str = ""


#: How a coding-agent run ended: a patch whose tests pass (proposed), a patch whose tests fail,
#: nothing changed, no usable answer, a budget stopped it, or it could not start.
CodingStatus = Literal["drafted", "tests_failed", "no_patch", "failed", "budget_exhausted", "not_run"]


class CodingResult(BaseModel):
    """The coding agent's run for the incident: on its view, its ticket page and in a comment."""

    status: CodingStatus
    message: str = ""
    repo: str = ""
    patch: str = ""
    files: list[str] = Field(default_factory=list)
    tests_passed: bool | None = None
    test_output: str = ""
    #: The model's summary of its reasoning (data, shown escaped).
    summary: str = ""
    run: AgentRun | None = None

    @property
    def proposable(self) -> bool:
        """A patch humans may approve: non-empty and its tests pass."""
        return self.status == "drafted" and bool(self.patch) and self.tests_passed is True
