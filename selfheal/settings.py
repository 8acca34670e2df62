"""One settings model: a YAML file (`--config` / `SELFHEAL_CONFIG`) plus `SELFHEAL_*` overrides.

Nested values override with a double underscore, e.g. `SELFHEAL_TEMPORAL__ADDRESS=host:7233`.
Invalid input raises `ConfigError` whose message names the field, so the CLI can exit 2 with it.
Each integration's section lives beside its code (`connectors/temporal.py`, `connectors/jira/settings.py`,
`connectors/git/settings.py`, `connectors/kube/settings.py`, `connectors/gitops/settings.py`,
`investigation/settings.py`, `activities/remediation_settings.py`, the `incident:` policy in
`models/incident_state.py`); this model only composes them with the app's own keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from activities.remediation_settings import RemediationSettings
from connectors.gitops.settings import GitopsSettings
from connectors.jira.settings import JiraSettings
from connectors.kube.settings import KubeSettings
from connectors.temporal import TemporalSettings
from investigation.settings import EvidenceSettings, InvestigationSettings
from models.incident_state import IncidentPolicy
from models.settings import Section
from selfheal.auth import AuthSettings


class ConfigError(Exception):
    """Configuration that cannot be used; the message is one line naming the field."""


class TrackerSettings(Section):
    kind: Literal["local", "jira"] = "local"
    jira: JiraSettings | None = None
    #: Jira's outgoing webhook secret: the HMAC key of `X-Hub-Signature` (never accepted in the URL).
    webhook_secret: SecretStr | None = None
    #: Optional, weaker: a separate secret accepted as `?token=` on the Jira webhook URL, for Jira
    #: versions that cannot sign. URLs end up in proxy and access logs; enable it only if you must.
    webhook_url_token: SecretStr | None = None
    #: Accounts whose comments are our own and never decisions.
    bot_accounts: list[str] = Field(default_factory=list)


class Settings(BaseSettings):
    """Everything selfheal reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SELFHEAL_", env_nested_delimiter="__", extra="forbid")
    #: The YAML file these settings came from (its directory is hidden from sandboxed commands).
    _config_file: Path | None = PrivateAttr(default=None)

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
    #: The webhook's hard limit. Measured (bench/webhook_size.py, real Alertmanager): one group of
    #: 10,000 kube-prometheus alerts is 10.6 MiB, so 16 MiB takes it whole; Alertmanager never
    #: retries a 413, so a lower limit loses big outages.
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    #: Alerts of one notification kept on the incident (firing first); the rest are counted as
    #: truncated, like Alertmanager's `max_alerts`. Bounds the workflow's state whatever arrives.
    max_alerts_per_notification: int = Field(default=500, ge=1, le=5000)
    #: Removed: people and their roles live in `auth.users` (a name list proved nothing about the
    #: caller). Kept only to refuse an old config with a message saying what to write instead.
    approvers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_url: str = ""
    #: Key signing the `/ui` session cookie; unset: one is generated into `<data_dir>/ui-secret` (0600).
    #: Set it when several API replicas share one hostname.
    ui_secret: SecretStr | None = None
    #: People, their roles and their identity per channel (API token, OIDC, Jira).
    auth: AuthSettings = Field(default_factory=AuthSettings)
    temporal: TemporalSettings = Field(default_factory=TemporalSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    incident: IncidentPolicy = Field(default_factory=IncidentPolicy)
    remediation: RemediationSettings = Field(default_factory=RemediationSettings)
    #: The cluster `kube` steps act on; unset: playbooks with kube steps are refused at run time.
    kube: KubeSettings | None = None
    #: Forges (pull requests), Argo CD and the forges' webhooks, for `pull_request` and `gitops_sync`.
    gitops: GitopsSettings = Field(default_factory=GitopsSettings)
    evidence: EvidenceSettings = Field(default_factory=EvidenceSettings)
    investigation: InvestigationSettings = Field(default_factory=InvestigationSettings)

    @field_validator("approvers", mode="before")
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if value:
            raise ValueError(
                "removed; give each approver a user instead:"
                " auth.users.<name>: {roles: [approver], token_sha256: ..., jira: ...}"
                " (selfheal token create NAME --role approver prints the line)"
            )
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

    def sandbox_hidden(self) -> list[Path]:
        """What a sandboxed command must never see: the data dir (tokens, the stores), the config
        file's directory and the worker's home (SSH keys, kubeconfig, cloud credentials)."""
        hidden = [self.data_dir.resolve(), Path.home()]
        if self._config_file is not None:
            hidden.append(self._config_file.resolve().parent)
        return hidden

    def secret_values(self) -> list[str]:
        """Every secret configured (each `SecretStr` anywhere in the settings), to redact verbatim
        from output that reaches a ticket: a printed token file matches no pattern."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item)
            elif isinstance(value, list | tuple):
                for item in value:
                    walk(item)

        walk(self)
        return [v for v in found if len(v) >= 8]


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
        settings = Settings(**data)
        settings._config_file = Path(path) if path else None
        return settings
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
