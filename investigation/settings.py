"""Settings of the evidence sources and of the investigator (`evidence:` and `investigation:`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from connectors.llm import LlmSettings
from models.settings import Section


class ServiceEvidence(Section):
    """Per-service evidence queries; `{service}` in a template is replaced by the service name."""

    golden_signals: dict[str, str] = Field(default_factory=dict)
    logql: str | None = None
    #: A command printing recent log lines (oldest first) for stores other than Loki, as an argv
    #: list (no shell), e.g. `[journalctl, -u, "{service}", --since, -15min, -o, cat]`.
    log_command: list[str] = Field(default_factory=list)
    affected_users: str | None = None
    #: Globs of paths in the watched repos that belong to this service (for suspect changes);
    #: `{service}` is replaced too.
    paths: list[str] = Field(default_factory=list)
    #: Services this one calls (e.g. `[payments, postgres]`): a change in one of them is a suspect
    #: too. Traces add the ones they show.
    depends_on: list[str] = Field(default_factory=list)


class EvidenceSettings(Section):
    """Where evidence comes from; every source is optional and bounded in time and size."""

    enabled: bool = True
    prometheus_url: str | None = None
    loki_url: str | None = None
    loki_tenant: str | None = None
    tempo_url: str | None = None
    jaeger_url: str | None = None
    traces_ui_url: str = ""
    #: Repos whose recent commits are suspects (name → local clone); remediation repos are added.
    change_repos: dict[str, Path] = Field(default_factory=dict)
    change_window_seconds: float = Field(default=6 * 3600, gt=0)
    services: dict[str, ServiceEvidence] = Field(default_factory=dict)
    default_service: ServiceEvidence = Field(default_factory=ServiceEvidence)
    #: SQLAlchemy URL of the incident store; default `sqlite:///<data_dir>/incidents.db`.
    store_url: str | None = None
    timeout_seconds: float = Field(default=10, gt=0)
    max_log_lines: int = Field(default=200, ge=1)
    max_log_bytes: int = Field(default=20_000, ge=1000)
    #: Metric graphs cover this long before the alert start, at no finer step than the minimum.
    graph_window_seconds: float = Field(default=3600, gt=0)
    graph_min_step_seconds: float = Field(default=15, gt=0)
    #: How far before the alert start logs and traces are read, so new errors stand out from old noise.
    lookback_seconds: float = Field(default=900, ge=0)
    redact_emails: bool = False


class CodingAgentSettings(Section):
    """`investigation.coding_agent`: when no revert applies, an agent drafts a minimal patch with a
    test in a fresh worktree of the service's repository (`remediation.services.<name>.repo`). It
    talks to the model provider of `investigation.llm` (its key, URL and price table); the patch
    runs only as an approved plan."""

    enabled: bool = False
    #: The model's name at `investigation.llm`'s provider; default: `investigation.llm.model`.
    model: str | None = None
    #: Bounds per run: model requests (steps), total tokens, wall time, tool calls, characters per
    #: tool result, and bytes per file the agent writes.
    max_steps: int = Field(default=20, ge=1, le=200)
    max_tokens: int = Field(default=200_000, ge=1000)
    max_seconds: float = Field(default=600, gt=0, le=6 * 3600)
    max_tool_calls: int = Field(default=60, ge=1, le=1000)
    max_tool_output_chars: int = Field(default=12_000, ge=500)
    max_file_bytes: int = Field(default=200_000, ge=1000)


class InvestigationSettings(Section):
    """Which investigator writes the incident's investigation: `builtin` (no network) or `llm`."""

    investigator: Literal["builtin", "llm"] = "builtin"
    llm: LlmSettings = Field(default_factory=LlmSettings)
    coding_agent: CodingAgentSettings = Field(default_factory=CodingAgentSettings)

    def coding_llm(self) -> LlmSettings:
        """The coding agent's model settings: `investigation.llm` with the coding agent's model."""
        return self.llm.model_copy(update={"model": self.coding_agent.model or self.llm.model})

    @model_validator(mode="after")
    def _coding_agent_needs_a_model(self) -> InvestigationSettings:
        if not self.coding_agent.enabled:
            return self
        llm = self.coding_llm()
        if llm.api_key is None and (llm.provider == "anthropic" or not llm.base_url):
            raise ValueError(
                "investigation.llm.api_key is required when investigation.coding_agent.enabled is true"
                " (only an OpenAI-compatible base_url may go without one)"
            )
        budgets = [
            name for name in ("max_cost_per_incident", "max_cost_per_day") if getattr(llm, name) is not None
        ]
        if budgets and llm.model not in llm.prices:
            raise ValueError(
                f"investigation.llm.prices: no price for the coding agent's model {llm.model!r}, which"
                f" investigation.llm.{budgets[0]} needs (add input_per_mtok and output_per_mtok for it)"
            )
        return self

    @model_validator(mode="after")
    def _llm_needs_a_key(self) -> InvestigationSettings:
        llm = self.llm
        if (
            self.investigator == "llm"
            and llm.api_key is None
            and (llm.provider == "anthropic" or not llm.base_url)
        ):
            raise ValueError(
                "investigation.llm.api_key is required when investigation.investigator is 'llm'"
                " (only an OpenAI-compatible base_url may go without one)"
            )
        budgets = [
            name for name in ("max_cost_per_incident", "max_cost_per_day") if getattr(llm, name) is not None
        ]
        if budgets and llm.model not in llm.prices:
            raise ValueError(
                f"investigation.llm.prices: no price for model {llm.model!r}, which"
                f" investigation.llm.{budgets[0]} needs (add input_per_mtok and output_per_mtok for it)"
            )
        return self
