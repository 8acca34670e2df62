"""The `gitops:` settings: which forge hosts each remediation repository, Argo CD, the webhooks'
secrets and how often a wait looks again."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from models.settings import Section

_PROJECT = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")


def secret(value: SecretStr | None, where: str) -> str:
    """A configured token, or a non-retryable error naming the setting (checked on first use, so
    an example config loads and a worker without GitOps playbooks never needs one)."""
    if value is None or not value.get_secret_value():
        from connectors.gitops.forge import ForgeError

        env = "SELFHEAL_" + where.upper().replace(".", "__")
        raise ForgeError(f"{where} is not set (e.g. {env})", retryable=False)
    return value.get_secret_value()


class ForgeSettings(Section):
    """The forge of one remediation repository (`gitops.forges.<repo name>`)."""

    kind: Literal["github", "gitlab", "gitea"]
    #: The API root: `https://api.github.com` (GHES: `https://host/api/v3`), `https://gitlab.com`,
    #: `https://gitea.example.com` (Forgejo too).
    url: str
    #: `owner/name` (GitLab: the project's full path, groups included).
    project: str
    #: Set it from the environment: `SELFHEAL_GITOPS__FORGES__<REPO>__TOKEN`.
    token: SecretStr | None = None
    #: GitHub and Gitea: how a merge is made when selfheal merges (`merge`, `squash`, `rebase`).
    merge_method: Literal["merge", "squash", "rebase"] = "merge"
    request_timeout_seconds: float = Field(default=30, gt=0)

    @field_validator("project")
    @classmethod
    def _project(cls, project: str) -> str:
        if not _PROJECT.fullmatch(project) or ".." in project:
            raise ValueError(f"{project!r} is not owner/name (GitLab: group/…/project)")
        return project

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return url.rstrip("/")


class ArgoCdSettings(Section):
    #: Argo CD's server, e.g. `https://argocd.example.com`.
    url: str
    #: A project-scoped token (`argocd proj role create-token`), sent as a bearer token; set it
    #: from the environment: `SELFHEAL_GITOPS__ARGOCD__TOKEN`.
    token: SecretStr | None = None
    #: Verify the server's TLS certificate (off only for a lab).
    verify_tls: bool = True
    request_timeout_seconds: float = Field(default=30, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return url.rstrip("/")


class GitopsSettings(Section):
    #: Remediation repository name (`remediation.repos.<name>`) → its forge.
    forges: dict[str, ForgeSettings] = Field(default_factory=dict)
    argocd: ArgoCdSettings | None = None
    #: GitHub's webhook secret (HMAC of `X-Hub-Signature-256`); unset: the GitHub webhook is off.
    github_webhook_secret: SecretStr | None = None
    #: GitLab's webhook secret token (`X-Gitlab-Token`); unset: the GitLab webhook is off.
    gitlab_webhook_token: SecretStr | None = None
    #: Gitea/Forgejo's webhook secret (HMAC of `X-Gitea-Signature`); unset: that webhook is off.
    gitea_webhook_secret: SecretStr | None = None
    #: How often a wait for a merge looks at the forge when no webhook woke it first.
    pr_poll_seconds: float = Field(default=300, gt=0, le=3600)
    #: How often a sync wait looks at Argo CD or Flux.
    sync_poll_seconds: float = Field(default=5, gt=0, le=300)

    @model_validator(mode="after")
    def _secrets(self) -> GitopsSettings:
        for name in ("github_webhook_secret", "gitlab_webhook_token", "gitea_webhook_secret"):
            secret = getattr(self, name)
            if secret is not None and len(secret.get_secret_value()) < 16:
                raise ValueError(f"{name}: at least 16 characters")
        return self
