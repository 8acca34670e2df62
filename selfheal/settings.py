"""One settings model: a YAML file (`--config` / `SELFHEAL_CONFIG`) plus `SELFHEAL_*` overrides.

Nested values override with a double underscore, e.g. `SELFHEAL_TEMPORAL__ADDRESS=host:7233`.
Invalid input raises `ConfigError` whose message names the field, so the CLI can exit 2 with it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

TASK_QUEUE = "selfheal"


class ConfigError(Exception):
    """Configuration that cannot be used; the message is one line naming the field."""


class Section(BaseModel):
    """A settings section: unknown keys are typos, so they are errors."""

    model_config = ConfigDict(extra="forbid")


class TemporalSettings(Section):
    address: str = "127.0.0.1:7233"
    namespace: str = "default"
    task_queue: str = TASK_QUEUE
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    api_key: SecretStr | None = None
    ui_url: str = "http://127.0.0.1:8233"
    rpc_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    #: Threads the worker runs blocking activity work on (connector calls, git, each verify's
    #: whole hold window). As many as Temporal's default activity slots (100), so no activity
    #: waits for a thread; asyncio's default (cores + 4) made verifications queue.
    worker_threads: int = Field(default=100, ge=1, le=1000)
    #: Workflows the worker keeps in memory. An incident and its remediation child are two, so
    #: Temporal's default (1000) evicts during a 500-incident storm, and an evicted workflow is
    #: replayed from its whole history on its next task.
    max_cached_workflows: int = Field(default=2000, ge=0)
    #: How long a cached workflow's next task waits for this worker before any worker may take
    #: it (and replay it from scratch). Temporal's 10 s default was shorter than a busy worker's
    #: queue, so most tasks of a storm were replayed; a crashed worker delays its workflows this long.
    sticky_timeout_seconds: float = Field(default=30, gt=0, le=600)


class JiraSettings(Section):
    url: str = Field(min_length=1)
    project: str = Field(min_length=1)
    #: Jira Cloud: account e-mail + API token (basic). Server/DC: leave `user` empty, token is a PAT.
    user: str | None = None
    api_token: SecretStr | None = None
    cloud: bool = False
    #: 2: descriptions and comments in wiki markup (Server/DC, Cloud's v2). 3: Atlassian Document
    #: Format through REST v3 (Jira Cloud), where tables, links and code render natively.
    api_version: int = Field(default=2, ge=2, le=3)
    issue_type: str = "Task"
    labels: list[str] = Field(default_factory=lambda: ["selfheal"])
    priority_map: dict[str, str] = Field(
        default_factory=lambda: {"critical": "Highest", "error": "High", "warning": "High", "info": "Medium"}
    )
    default_priority: str = "Medium"
    #: Priorities in rising order; a re-escalation moves one step up.
    priority_order: list[str] = Field(default_factory=lambda: ["Lowest", "Low", "Medium", "High", "Highest"])
    escalation_labels: list[str] = Field(default_factory=lambda: ["selfheal-escalated"])
    escalation_assignee: str | None = None
    done_status: str = "Done"
    approved_status: str = "Approved"
    rejected_status: str = "Rejected"
    timeout_seconds: float = Field(default=15.0, gt=0)


class TrackerSettings(Section):
    kind: Literal["local", "jira"] = "local"
    jira: JiraSettings | None = None
    #: Jira's outgoing webhook secret (HMAC `X-Hub-Signature` or `?token=`).
    webhook_secret: SecretStr | None = None
    #: Accounts whose comments are our own and never decisions.
    bot_accounts: list[str] = Field(default_factory=list)


class IncidentPolicy(Section):
    decision_timeout_seconds: float = Field(default=1800, gt=0)
    max_reescalations: int = Field(default=3, ge=0)
    resolve_quiet_seconds: float = Field(default=300, ge=0)
    #: Label holding the affected service (first one present wins).
    service_labels: list[str] = Field(default_factory=lambda: ["service", "job", "app", "namespace"])
    activity_timeout_seconds: float = Field(default=30, gt=0)
    continue_as_new_after_events: int = Field(default=2000, ge=100)


class RepoSettings(Section):
    """A git repository selfheal may change: a local clone it owns, pushing to `remote`."""

    path: Path
    remote: str = "origin"
    base_branch: str = "main"


class RemediationSettings(Section):
    enabled: bool = True
    playbook_dirs: list[Path] = Field(default_factory=list)
    include_library: bool = True
    repos: dict[str, RepoSettings] = Field(default_factory=dict)
    #: Where fix worktrees live; default `<data_dir>/worktrees`.
    worktrees_dir: Path | None = None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    sandbox_memory_mb: int = Field(default=1024, ge=64)
    #: How often an incident retries when another remediation holds its target.
    lock_retry_seconds: float = Field(default=15, gt=0)
    #: Poll interval while verifying with Prometheus.
    verify_poll_seconds: float = Field(default=2, gt=0)
    #: Values playbook templates may read as `settings.<key>` (e.g. kube_api_url), besides public_url.
    playbook_settings: dict[str, str] = Field(default_factory=dict)

    def template_settings(self, public_url: str) -> dict[str, str]:
        return {"public_url": public_url, **self.playbook_settings}


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


class LlmSettings(Section):
    """The model behind the `llm` investigator: any OpenAI-compatible endpoint, or Anthropic."""

    provider: Literal["openai", "anthropic"] = "openai"
    model: str = "gpt-4o-mini"
    #: OpenAI-compatible base URL (vLLM, Ollama, LiteLLM, Azure…); None for the provider's own.
    base_url: str | None = None
    api_key: SecretStr | None = None
    #: Bounds per incident: model requests (steps), total tokens, and characters per tool result.
    max_requests: int = Field(default=12, ge=1, le=100)
    max_total_tokens: int = Field(default=60_000, ge=1000)
    max_tool_output_chars: int = Field(default=8_000, ge=500)
    timeout_seconds: float = Field(default=120, gt=0)


class InvestigationSettings(Section):
    """Which investigator writes the incident's investigation: `builtin` (no network) or `llm`."""

    investigator: Literal["builtin", "llm"] = "builtin"
    llm: LlmSettings = Field(default_factory=LlmSettings)

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
        return self


class Settings(BaseSettings):
    """Everything selfheal reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SELFHEAL_", env_nested_delimiter="__", extra="forbid")

    env: Literal["dev", "production"] = "production"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    data_dir: Path = Path(".selfheal")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    webhook_token: SecretStr | None = None
    #: Optional basic-auth pair accepted on the webhook besides the bearer token.
    webhook_basic_user: str | None = None
    webhook_basic_password: SecretStr | None = None
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: Users allowed to approve or reject. Empty: anyone in dev, nobody in production.
    approvers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str = ""
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    incident: IncidentPolicy = Field(default_factory=IncidentPolicy)
    remediation: RemediationSettings = Field(default_factory=RemediationSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    investigation: InvestigationSettings = Field(default_factory=InvestigationSettings)

    @field_validator("approvers", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the YAML file, which arrives as init kwargs.
        return (env_settings, init_settings)

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def local_db_path(self) -> Path:
        return self.data_dir / "tickets.db"

    @property
    def store_url(self) -> str:
        return self.evidence.store_url or f"sqlite:///{(self.data_dir / 'incidents.db').resolve()}"

    @property
    def worktrees_dir(self) -> Path:
        return self.remediation.worktrees_dir or self.data_dir / "worktrees"


def _field_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(root)"


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Load settings from the YAML file (if any) and the environment; raise ConfigError on bad input."""
    path = config or os.environ.get("SELFHEAL_CONFIG")
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"config {p}: cannot read: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"config {p}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"config {p}: top level must be a mapping")
        data = raw
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**data)
    except SettingsError as exc:
        raise ConfigError(f"environment: {exc}") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        field = _field_path(loc)
        source = f"config {path}" if path else "settings"
        for depth in range(len(loc), 0, -1):
            name = "SELFHEAL_" + "__".join(str(p).upper() for p in loc[:depth])
            if name in os.environ:
                source = f"environment {name}"
                break
        raise ConfigError(f"{source}: {field}: {err['msg']}") from exc
