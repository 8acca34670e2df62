"""Every client the worker talks through, built once from settings, in one place.

Activities receive the clients they need in their constructors and never see `Settings`, so which
URL, timeout or credential a connector gets is decided here and only here. One worker, one set:
HTTP clients keep their connection pools, the incident store its engine, the LLM its SDK client.

Which Prometheus (as the README documents it):
- playbook queries (diagnose checks, `run_checks`, `verify_fix`) use `remediation.prometheus_url`,
  the Prometheus the playbooks were written against;
- evidence reads (graphs, figures, the LLM investigator's live tools) use `evidence.prometheus_url`,
  which defaults to `remediation.prometheus_url`.

Git repositories are the exception to "built once": a GitPython `Repo` holds `git cat-file`
processes and is not safe to share between the activity threads, so `open_repo` opens one per use
(the connector already serialises work on the same clone).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from connectors.alertmanager import AlertmanagerClient
from connectors.base import Tracker
from connectors.incident_store import LazyIncidentStore
from connectors.local_tracker import LocalTracker
from connectors.loki import LokiClient
from connectors.prometheus import PrometheusClient
from connectors.traces import JaegerClient, TempoClient
from investigation.agent import config_from_settings
from investigation.coding_tools import CodingRuntime
from investigation.live_tools import LlmRuntime
from models.agent import LlmRunConfig
from models.coding import CodingRunConfig
from selfheal.settings import ConfigError, Settings

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from connectors.git.repo import GitRepo
    from connectors.gitops.argocd import ArgoCd
    from connectors.gitops.flux import Flux
    from connectors.gitops.forge import Forge
    from connectors.kube.verbs import KubeActions

log = structlog.get_logger(__name__)

#: Timeout of the playbook-facing Prometheus and Alertmanager reads (not configurable so far).
PLAYBOOK_HTTP_TIMEOUT = 10.0


def build_tracker(settings: Settings) -> Tracker:
    """Jira when `tracker.kind` is `jira`, else the local SQLite tracker.

    Jira's deployment is checked here (serverInfo), so a `cloud` or `api_version` setting the
    server contradicts stops the worker with one line; the create ledger is a table in the
    incident store's database, shared by every worker that shares the store."""
    if settings.tracker.kind == "jira":
        if settings.tracker.jira is None:
            raise ConfigError("settings: tracker.jira: required when tracker.kind is 'jira'")
        from connectors.base import TrackerError
        from connectors.jira.ledger import CreateLedger
        from connectors.jira.tracker import JiraTracker

        ledger = CreateLedger(settings.store_url)
        tracker = JiraTracker(settings.tracker.jira, ledger=ledger)
        try:
            tracker.check_deployment()
        except TrackerError as err:
            if not err.retryable:  # the settings contradict the server: refuse to start
                tracker.close()
                raise ConfigError(f"settings: {err}") from err
            # Jira unreachable: the worker still starts; the deployment is asked on first use.
            log.warning("jira: could not read serverInfo at start", error=str(err))
        return tracker
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return LocalTracker(settings.local_db_path, base_url=base)


def llm_run_config(settings: Settings) -> LlmRunConfig:
    """The LLM investigator's non-secret run configuration (what `llm_investigator_config` returns)."""
    return config_from_settings(settings.investigation.llm, settings.evidence, settings.remediation.repos)


def coding_run_config(settings: Settings) -> CodingRunConfig:
    """The coding agent's non-secret run configuration (what `coding_agent_config` returns)."""
    section = settings.investigation.coding_agent
    llm = settings.investigation.coding_llm()
    return CodingRunConfig(
        enabled=section.enabled,
        model=llm.model,
        max_steps=section.max_steps,
        max_tokens=section.max_tokens,
        max_seconds=section.max_seconds,
        max_tool_calls=section.max_tool_calls,
        max_tool_output_chars=section.max_tool_output_chars,
        redact_emails=settings.evidence.redact_emails,
        price=llm.prices.get(llm.model),
        max_cost_per_incident=llm.max_cost_per_incident,
        max_cost_per_day=llm.max_cost_per_day,
    )


class Clients:
    """The worker's clients. HTTP clients exist only for configured URLs (None otherwise); the
    incident store and the LLM model are built on first use, so a worker that never needs them
    never opens a database or checks an API key. `close()` releases what was built here (the
    tracker is left to whoever made it)."""

    def __init__(
        self,
        settings: Settings,
        *,
        tracker: Tracker | None = None,
        llm_model: Model | None = None,
        coding_model: Model | None = None,
    ) -> None:
        """`tracker`, `llm_model` and `coding_model` replace the configured ones (tests: a tracker
        they inspect, scripted models)."""
        self._settings = settings
        ev = settings.evidence
        rem = settings.remediation
        self.tracker: Tracker = tracker or build_tracker(settings)
        #: The playbooks' Prometheus: diagnose checks, checks before acting, verification.
        self.prometheus: PrometheusClient | None = None
        if rem.prometheus_url:
            self.prometheus = PrometheusClient(rem.prometheus_url, timeout=PLAYBOOK_HTTP_TIMEOUT)
        #: The evidence Prometheus: graphs, figures and the LLM's PromQL tools.
        self.evidence_prometheus: PrometheusClient | None = None
        if evidence_url := ev.prometheus_url or rem.prometheus_url:
            self.evidence_prometheus = PrometheusClient(evidence_url, timeout=ev.timeout_seconds)
        self.alertmanager: AlertmanagerClient | None = None
        if rem.alertmanager_url:
            self.alertmanager = AlertmanagerClient(rem.alertmanager_url, timeout=PLAYBOOK_HTTP_TIMEOUT)
        self.loki: LokiClient | None = None
        if ev.loki_url:
            self.loki = LokiClient(ev.loki_url, timeout=ev.timeout_seconds, tenant=ev.loki_tenant)
        self.traces: TempoClient | JaegerClient | None = None
        if ev.tempo_url:
            self.traces = TempoClient(ev.tempo_url, timeout=ev.timeout_seconds, ui_url=ev.traces_ui_url)
        elif ev.jaeger_url:
            # No UI configured: links go to Jaeger's own UI.
            ui = ev.traces_ui_url or None
            self.traces = JaegerClient(ev.jaeger_url, timeout=ev.timeout_seconds, ui_url=ui)
        #: The kube verbs' cluster, only when `kube:` is configured (its client built on first use).
        self._kube: KubeActions | None = None
        #: Repository name → local clone: remediation repos plus evidence change repos.
        self.repo_paths: dict[str, Path] = {name: r.path for name, r in rem.repos.items()}
        self.repo_paths.update(ev.change_repos)
        self._llm_model = llm_model
        self._coding_model = coding_model
        #: One incident store (engine and connection pool) per worker, opened on first call.
        self.incident_store = LazyIncidentStore(settings.store_url)
        self._lock = threading.Lock()
        #: GitOps: one forge client per configured repository and one Argo CD client, on first use.
        self._forges: dict[str, Forge] = {}
        self._argocd: ArgoCd | None = None

    def open_repo(self, name: str) -> GitRepo:
        """A fresh handle on the remediation repository `name` (KeyError when not configured)."""
        from connectors.git.repo import GitRepo

        cfg = self._settings.remediation.repos[name]
        return GitRepo(cfg.path, remote=cfg.remote, base_branch=cfg.base_branch)

    def kube(self) -> KubeActions | None:
        """The kube verbs against the configured cluster (None without `kube:`); the client is built
        once, here, from the kubeconfig or the pod's service account."""
        section = self._settings.kube
        if section is None:
            return None
        with self._lock:
            if self._kube is None:
                from connectors.kube.api import KubeApi, KubeError, build_api_client
                from connectors.kube.verbs import KubeActions

                try:
                    api_client = build_api_client(section)
                except KubeError as err:
                    raise ConfigError(f"settings: kube: {err}") from err
                self._kube = KubeActions(
                    KubeApi(api_client, timeout=section.request_timeout_seconds), section
                )
            return self._kube

    def forge(self, repo: str) -> Forge | None:
        """The forge hosting remediation repository `repo` (`gitops.forges.<repo>`), or None."""
        section = self._settings.gitops.forges.get(repo)
        if section is None:
            return None
        with self._lock:
            if repo not in self._forges:
                from connectors.gitops.gitea import GiteaForge
                from connectors.gitops.github import GithubForge
                from connectors.gitops.gitlab import GitlabForge

                kinds = {"github": GithubForge, "gitlab": GitlabForge, "gitea": GiteaForge}
                self._forges[repo] = kinds[section.kind](section)
            return self._forges[repo]

    def argocd(self) -> ArgoCd | None:
        """Argo CD (`gitops.argocd`), or None."""
        section = self._settings.gitops.argocd
        if section is None:
            return None
        with self._lock:
            if self._argocd is None:
                from connectors.gitops.argocd import ArgoCd

                self._argocd = ArgoCd(section)
            return self._argocd

    def flux(self) -> Flux | None:
        """Flux through the `kube:` connection (None without it)."""
        kube = self.kube()
        if kube is None:
            return None
        from connectors.gitops.flux import Flux

        return Flux(kube.api, kube.settings.namespaces)

    def llm_model(self) -> Model:
        """The investigator's model, built from `investigation.llm` on first use."""
        with self._lock:
            if self._llm_model is None:
                from connectors.llm import build_model

                self._llm_model = build_model(self._settings.investigation.llm)
            return self._llm_model

    def llm_runtime(self) -> LlmRuntime:
        """What the LLM investigator's live tools and model activity use on this worker."""
        return LlmRuntime(
            model=self.llm_model,
            incident_store=self.incident_store,
            prometheus=self.evidence_prometheus,
            loki=self.loki,
            traces=self.traces,
            repos=self.repo_paths,
            redact_emails=self._settings.evidence.redact_emails,
        )

    def coding_model(self) -> Model:
        """The coding agent's model, built from `investigation.llm` and its own model name on first use."""
        with self._lock:
            if self._coding_model is None:
                from connectors.llm import build_model

                self._coding_model = build_model(self._settings.investigation.coding_llm())
            return self._coding_model

    def coding_runtime(self) -> CodingRuntime:
        """What the coding agent's tools and model activity use on this worker."""
        settings = self._settings
        rem = settings.remediation
        return CodingRuntime(
            model=self.coding_model,
            worktrees_dir=settings.worktrees_dir,
            sandbox_paths={name: list(repo.sandbox_paths) for name, repo in rem.repos.items()},
            sandbox_hidden=settings.sandbox_hidden(),
            secret_values=settings.secret_values(),
            memory_mb=rem.sandbox_memory_mb,
            max_file_bytes=settings.investigation.coding_agent.max_file_bytes,
        )

    def close(self) -> None:
        for client in (self.prometheus, self.evidence_prometheus, self.alertmanager, self.loki, self.traces):
            if client is not None:
                client.close()
        self.incident_store.close()
        if self._kube is not None:
            self._kube.api.close()
        if self._argocd is not None:
            self._argocd.close()
