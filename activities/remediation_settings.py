"""The `remediation:` settings: what playbooks may change and how their fixes run."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, model_validator

from connectors.git.settings import RepoSettings
from models.settings import Section
from playbooks.proposal import SERVICE_PATTERN, ServiceDefaults
from playbooks.schema import invalid


class RemediationSettings(Section):
    enabled: bool = True
    playbook_dirs: list[Path] = Field(default_factory=list)
    include_library: bool = True
    repos: dict[str, RepoSettings] = Field(default_factory=dict)
    #: Where fix worktrees live; default `<data_dir>/worktrees`.
    worktrees_dir: Path | None = None
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    #: An alert absent from an Alertmanager younger than this is "unknown", not "resolved": after a
    #: restart it knows nothing until Prometheus re-sends (resend_delay, 1m by default). 0 disables.
    alertmanager_warmup_seconds: float = Field(default=120, ge=0)
    sandbox_memory_mb: int = Field(default=1024, ge=64)
    #: How often an incident retries when another remediation holds its target.
    lock_retry_seconds: float = Field(default=15, gt=0)
    #: Poll interval while verifying with Prometheus.
    verify_poll_seconds: float = Field(default=2, gt=0)
    #: Values playbook templates may read as `settings.<key>` (e.g. kube_api_url), besides public_url.
    playbook_settings: dict[str, str] = Field(default_factory=dict)
    #: Per service: how an approved proposal (a revert or a patch from the investigation) is tested,
    #: deployed and verified, in the playbook step syntax (`playbooks/proposal.py`, docs/playbooks.md).
    services: dict[str, ServiceDefaults] = Field(default_factory=dict)
    #: The repository (in `repos`) where playbooks drafted from healed incidents are proposed, as a
    #: branch `selfheal/draft-<incident>`; unset: drafts are only attached to the ticket.
    playbooks_repo: str | None = None
    #: The directory inside `playbooks_repo` drafts are written to (one of `playbook_dirs` once merged).
    playbooks_repo_dir: str = Field(default=".", pattern=r"^(\.|[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*)$")

    @model_validator(mode="after")
    def _service_repos(self) -> RemediationSettings:
        for name, defaults in self.services.items():
            if not re.fullmatch(SERVICE_PATTERN, name):
                raise invalid(f"services: {name!r} is not a service name ({SERVICE_PATTERN})")
            if defaults.repo not in self.repos:
                known = ", ".join(sorted(self.repos)) or "none configured"
                raise invalid(
                    f"services.{name}.repo: {defaults.repo!r} is not in remediation.repos ({known})"
                )
        if self.playbooks_repo is not None and self.playbooks_repo not in self.repos:
            known = ", ".join(sorted(self.repos)) or "none configured"
            raise invalid(f"playbooks_repo: {self.playbooks_repo!r} is not in remediation.repos ({known})")
        if ".." in self.playbooks_repo_dir.split("/"):
            raise invalid("playbooks_repo_dir: must stay inside the repository (no '..')")
        return self

    def template_settings(self, public_url: str) -> dict[str, str]:
        return {"public_url": public_url, **self.playbook_settings}
