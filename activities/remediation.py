"""Remediation activities: thin adapters from plan steps to the git, command, HTTP,
Prometheus and Alertmanager connectors, plus the playbook matcher and the run gate.

Connector calls block, so they run in threads; long ones heartbeat. Errors that retrying
cannot fix are raised as non-retryable `RemediationRejected`. The clients come built (one per
worker, `selfheal/clients.py`); this module only decides what to ask them.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import random
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.common import Priority, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.remediation_settings import RemediationSettings
from connectors.temporal import TemporalSettings
from models.control import (
    GrantBatch,
    GrantDelivery,
    RunGrant,
    RunRequest,
    RunTicket,
)
from models.ids import CONTROL_WORKFLOW, control_workflow_id
from models.incident import WebhookAlert
from models.plan import (
    CommandAction,
    GitApplyAction,
    GitEditAction,
    GitPushAction,
    GitRevertAction,
    HttpAction,
    KubeAction,
    KubeWaitAction,
    MatchResult,
)
from models.remediation import (
    CheckReport,
    ChecksRequest,
    CommitRequest,
    FiringRequest,
    MatchRequest,
    Resolution,
    ResolveRequest,
    RollbackRequest,
    StepOutcome,
    StepRequest,
    VerifyOutcome,
    VerifyRequest,
    WorktreeInfo,
    WorktreeRequest,
)
from pages.redact import redact

if TYPE_CHECKING:
    from connectors.alertmanager import AlertmanagerClient
    from connectors.git.repo import GitRepo
    from connectors.kube.verbs import KubeActions
    from connectors.prometheus import PrometheusClient

log = structlog.get_logger(__name__)
T = TypeVar("T")
#: Signal attempts at a busy control workflow before the activity's own retry takes over.
_BUSY_ATTEMPTS = 10


def rejected(message: str) -> ApplicationError:
    return ApplicationError(message, type="RemediationRejected", non_retryable=True)


async def in_thread(fn: Callable[[], T], incident_id: str) -> T:
    """Run a blocking connector call, heartbeating so a dead worker is noticed in seconds; a
    connector error that is not `retryable` becomes a non-retryable `RemediationRejected`."""
    structlog.contextvars.bind_contextvars(incident_id=incident_id or None)
    task = asyncio.create_task(asyncio.to_thread(fn))
    try:
        while not task.done():
            # The first heartbeat goes out after 2 s, not at once: most calls finish sooner, and
            # each heartbeat is a write on the Temporal server.
            await asyncio.wait({task}, timeout=2)
            if not task.done() and activity.in_activity():
                activity.heartbeat()
        return task.result()
    except Exception as err:
        if getattr(err, "retryable", True) is False:
            raise rejected(str(err)) from err
        raise


class RemediationActivities:
    def __init__(
        self,
        settings: RemediationSettings,
        client: Client,
        *,
        temporal: TemporalSettings,
        open_repo: Callable[[str], GitRepo],
        worktrees_dir: Path,
        data_dir: Path,
        public_url: str = "",
        prometheus: PrometheusClient | None = None,
        alertmanager: AlertmanagerClient | None = None,
        kube: KubeActions | None = None,
        sandbox_hidden: Sequence[Path] = (),
        secret_values: Sequence[str] = (),
    ) -> None:
        """`open_repo` opens a configured repository by name; `prometheus` and `alertmanager` are
        None when `remediation.prometheus_url` / `alertmanager_url` are not configured, `kube` when
        the `kube:` section is not. `sandbox_hidden` never shows in a sandboxed command;
        `secret_values` never leave one's output."""
        self.settings = settings
        self.client = client
        self.temporal = temporal
        self.open_repo = open_repo
        self.worktrees_dir = worktrees_dir
        self.data_dir = data_dir
        self.public_url = public_url
        self.prometheus = prometheus
        self.alertmanager = alertmanager
        self.sandbox_hidden = list(sandbox_hidden)
        self.secret_values = list(secret_values)
        self.kube = kube
        self._playbooks: Any = None

    # --- helpers ----------------------------------------------------------------------------------

    async def _thread(self, fn: Callable[[], T], incident_id: str) -> T:
        return await in_thread(fn, incident_id)

    def _repo(self, name: str) -> GitRepo:
        if name not in self.settings.repos:
            raise rejected(f"repo {name!r} is not configured (remediation.repos)")
        return self.open_repo(name)

    def playbook_set(self) -> Any:
        from playbooks.loader import load_playbooks

        if self._playbooks is None:
            self._playbooks = load_playbooks(
                list(self.settings.playbook_dirs),
                self.settings.include_library,
                known_repos=list(self.settings.repos),
                kube_namespaces=self.kube.settings.namespaces if self.kube is not None else None,
            )
        return self._playbooks

    def playbook_category(self, name: str) -> str:
        """The `category:` of a loaded playbook ("" when unknown or the playbooks cannot load)."""
        try:
            pbs = self.playbook_set()
        except Exception:
            return ""
        playbook = pbs.by_name.get(name) or next((p for p, _ in pbs.skipped if p.name == name), None)
        return str(playbook.spec.category) if playbook is not None else ""

    # --- matching and gating ----------------------------------------------------------------------

    @activity.defn(name="match_playbook")
    async def match_playbook(self, req: MatchRequest) -> MatchResult | None:
        """The first firing alert a playbook applies to; else the reasons for the first alert."""
        if not self.settings.enabled:
            return None
        pbs = await self._thread(self.playbook_set, req.incident_id)
        ctx = self.settings.template_settings(self.public_url)
        alerts = (WebhookAlert.model_validate(t.model_dump()) for t in req.alerts)
        found: MatchResult | None = pbs.match_first(alerts, incident_id=req.incident_id, settings_ctx=ctx)
        return found

    @activity.defn(name="resolve_candidate")
    async def resolve_candidate(self, req: ResolveRequest) -> Resolution:
        """Read a candidate's `from: query` params from Prometheus and render its plan; a missing
        result or a value its pattern refuses rules it out (reasons), a failed query raises."""
        pbs = await self._thread(self.playbook_set, req.incident_id)
        prom = self._prometheus()
        ctx = self.settings.template_settings(self.public_url)
        alert = WebhookAlert.model_validate(req.alert.model_dump())
        plan, reasons = await self._thread(
            lambda: pbs.resolve(
                req.candidate, alert, prom.series_labels, incident_id=req.incident_id, settings_ctx=ctx
            ),
            req.incident_id,
        )
        return Resolution(plan=plan, reasons=reasons)

    @activity.defn(name="acquire_run")
    async def acquire_run(self, req: RunRequest) -> RunGrant:
        """Queue a request at the control workflow (started on first use) and wait for its answer.

        The control workflow decides queued requests in batches and completes this activity
        through its task token (`deliver_grants`); if no answer comes within the timeout the
        workflow's retry asks again, and a run already granted to the incident is granted again.
        """
        ticket = RunTicket(request=req, task_token=base64.b64encode(activity.info().task_token).decode())
        for attempt in range(1, _BUSY_ATTEMPTS + 1):
            try:
                await self.client.start_workflow(
                    CONTROL_WORKFLOW,
                    None,
                    id=control_workflow_id(self.temporal.task_queue),
                    task_queue=self.temporal.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    start_signal="request_run",
                    start_signal_args=[ticket],
                    # Its tasks go ahead of the incidents' (every incident in line waits on it).
                    priority=Priority(priority_key=1),
                    rpc_timeout=timedelta(seconds=self.temporal.rpc_timeout_seconds),
                )
                break
            except RPCError as err:
                # "Workflow is busy": hundreds of incidents signalling at once contend for the control
                # workflow's lock in the history service. Transient: pause briefly, spread out.
                if err.status != RPCStatusCode.RESOURCE_EXHAUSTED or attempt == _BUSY_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0.1, 0.5 * attempt))  # noqa: S311 (jitter, not crypto)
        activity.raise_complete_async()

    @activity.defn(name="deliver_grants")
    async def deliver_grants(self, batch: GrantBatch) -> int:
        """Complete each waiting `acquire_run`; one that is gone (timed out, retried) is skipped,
        since its retry asks again. Returns how many were delivered."""
        limit = asyncio.Semaphore(32)
        failures: list[str] = []

        async def deliver(d: GrantDelivery) -> bool:
            handle = self.client.get_async_activity_handle(task_token=base64.b64decode(d.task_token))
            async with limit:
                try:
                    await handle.complete(d.grant)
                    return True
                except RPCError as err:
                    if err.status != RPCStatusCode.NOT_FOUND:
                        failures.append(str(err))
                    return False

        delivered = sum(await asyncio.gather(*(deliver(d) for d in batch.deliveries)))
        if failures:
            # Retrying the batch is safe: those already completed now answer NOT_FOUND and are skipped.
            raise ApplicationError(f"{len(failures)} grants not delivered, first: {failures[0]}")
        return delivered

    # --- checks -----------------------------------------------------------------------------------

    @activity.defn(name="check_firing")
    async def check_firing(self, req: FiringRequest) -> str:
        """`firing`, `resolved`, or `unknown` when no Alertmanager is configured or the one we ask
        has only just started (it has not heard from Prometheus yet)."""
        client = self.alertmanager
        if client is None:
            return "unknown"
        warmup = self.settings.alertmanager_warmup_seconds

        def run() -> str:
            state = client.firing_state(req.fingerprint, req.labels, warmup_seconds=warmup)
            # Absent from a young Alertmanager, but its resolved notification reached us: resolved.
            return "resolved" if state == "unknown" and req.status == "resolved" else state

        return await self._thread(run, "")

    @activity.defn(name="run_checks")
    async def run_checks(self, req: ChecksRequest) -> CheckReport:
        lines: list[str] = []
        ok = True
        prom = self._prometheus()
        for check in req.checks:
            values = await self._thread(functools.partial(prom.query, check.query), req.incident_id)
            holds = bool(values) and prom.check(check.condition, values)
            ok = ok and holds
            lines.append(
                f"{check.name}: {values} {check.condition} → {'holds' if holds else 'does not hold'}"
            )
        return CheckReport(ok=ok, lines=lines)

    def _prometheus(self) -> PrometheusClient:
        if self.prometheus is None:
            raise rejected("remediation.prometheus_url is not configured but the playbook queries Prometheus")
        return self.prometheus

    # --- fix, test, deploy ------------------------------------------------------------------------

    @activity.defn(name="prepare_worktree")
    async def prepare_worktree(self, req: WorktreeRequest) -> WorktreeInfo:
        def run() -> WorktreeInfo:
            repo = self._repo(req.repo)
            wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir)
            fix = repo.find_fix_commit(wt, req.incident_id)
            if fix is None:
                # A fresh attempt: drop what an abandoned one may have left uncommitted.
                wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir, clean=True)
            return WorktreeInfo(path=str(wt.path), branch=wt.branch, fix_commit=fix)

        return await self._thread(run, req.incident_id)

    @activity.defn(name="apply_step")
    async def apply_step(self, req: StepRequest) -> StepOutcome:
        action = req.step.action
        if isinstance(action, GitRevertAction):
            return await self._thread(lambda: self._git_revert(req, action), req.incident_id)
        if isinstance(action, GitEditAction):
            return await self._thread(lambda: self._git_edit(req, action), req.incident_id)
        if isinstance(action, GitApplyAction):
            return await self._thread(lambda: self._git_apply(req, action), req.incident_id)
        if isinstance(action, GitPushAction):
            return await self.deploy_step(req)
        return await self._run_plain(req)

    def _git_revert(self, req: StepRequest, action: GitRevertAction) -> StepOutcome:
        assert req.repo
        repo = self._repo(req.repo)
        wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir)
        if action.commit is not None:
            subject = repo.revert_commit(wt, action.commit)
            return StepOutcome(ok=True, detail=f"reverted {action.commit[:12]} ({subject[:120]})")
        until = req.alert_starts_at
        since = until - timedelta(seconds=action.since_seconds)
        shas = repo.revert_window(wt, since, until, action.paths, action.max_commits)
        return StepOutcome(ok=True, detail="reverted " + ", ".join(s[:12] for s in shas))

    def _git_apply(self, req: StepRequest, action: GitApplyAction) -> StepOutcome:
        assert req.repo
        repo = self._repo(req.repo)
        wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir)
        numstat = repo.apply_patch(wt, action.patch)
        files = [line.split("\t")[-1] for line in numstat.splitlines() if line.strip()]
        return StepOutcome(ok=True, detail=f"patch applied to {', '.join(files[:5]) or 'no file'}")

    def _git_edit(self, req: StepRequest, action: GitEditAction) -> StepOutcome:
        assert req.repo
        repo = self._repo(req.repo)
        wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir)
        old, new = repo.edit_value(
            wt,
            action.file,
            action.key,
            value=action.value,
            scale=action.scale,
            max_value=action.max_value,
            fmt=action.format,
        )
        return StepOutcome(ok=True, detail=f"{action.file}: {action.key} {old!r} → {new!r}")

    async def _run_plain(self, req: StepRequest) -> StepOutcome:
        action = req.step.action
        if isinstance(action, HttpAction):
            from connectors.http_action import perform_http

            res = await self._thread(lambda: perform_http(action), req.incident_id)
            return StepOutcome(ok=bool(res.ok), detail=f"{action.method} {action.url} → {res.status}")
        if isinstance(action, CommandAction):
            return await self._command(req, action, sandbox=action.sandbox)
        if isinstance(action, KubeAction):
            return await self._kube_verb(req, action)
        if isinstance(action, KubeWaitAction):
            return await self._kube_wait(req, action)
        raise rejected(
            f"step kind {action.kind} is not valid here (pull_request and gitops_sync are deploy steps)"
        )

    def _kube_actions(self) -> KubeActions:
        if self.kube is None:
            raise rejected("the `kube:` settings section is not configured but the playbook has kube steps")
        return self.kube

    async def _kube_verb(self, req: StepRequest, action: KubeAction) -> StepOutcome:
        """One kube verb; a refusal (allow-list, floor, wrong state) is non-retryable, a blocked
        eviction or a spent in-flight budget is retried by Temporal."""
        kube = self._kube_actions()
        res = await self._thread(
            lambda: kube.run(action, incident_id=req.incident_id, since=req.alert_starts_at), req.incident_id
        )
        return StepOutcome(ok=True, detail=res.detail, changed=res.changed)

    async def _kube_wait(self, req: StepRequest, action: KubeWaitAction) -> StepOutcome:
        kube = self._kube_actions()
        res = await self._thread(lambda: kube.wait(action, incident_id=req.incident_id), req.incident_id)
        return StepOutcome(ok=res.done, detail=res.detail, changed=False)

    async def _command(self, req: StepRequest, action: CommandAction, *, sandbox: bool) -> StepOutcome:
        from connectors.commands import run_command

        # Without a worktree a command gets a scratch directory of its own, never the data dir.
        root = Path(req.worktree) if req.worktree else self.data_dir / "scratch" / req.incident_id
        root.mkdir(parents=True, exist_ok=True)
        cwd = (root / action.cwd).resolve()
        if not cwd.is_relative_to(root.resolve()):
            raise rejected(f"cwd {action.cwd!r} escapes the worktree")
        repo_settings = self.settings.repos.get(req.repo or "")
        readable = repo_settings.sandbox_paths if repo_settings is not None else []
        res = await self._thread(
            lambda: run_command(
                action.argv,
                cwd=cwd,
                env=action.env,
                timeout=action.timeout_seconds,
                sandbox=sandbox,
                writable=root if sandbox else None,
                readable=readable,
                hidden=self.sandbox_hidden,
                memory_mb=self.settings.sandbox_memory_mb,
            ),
            req.incident_id,
        )
        output = redact(res.stderr or res.stdout, known=self.secret_values)
        tail = output.strip().splitlines()[-3:]
        detail = f"{' '.join(action.argv)[:120]} → exit {res.returncode} in {res.duration_seconds:.1f}s"
        if res.sandboxed != "bwrap" and sandbox:
            detail += f" (sandbox: {res.sandboxed})"
        if tail and res.returncode != 0:
            detail += ": " + " | ".join(tail)[:300]
        return StepOutcome(ok=res.returncode == 0, detail=detail)

    @activity.defn(name="commit_fix")
    async def commit_fix(self, req: CommitRequest) -> str:
        def run() -> str:
            repo = self._repo(req.repo)
            wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir)
            sha: str = repo.commit_fix(wt, req.incident_id, req.message)
            return sha

        return await self._thread(run, req.incident_id)

    @activity.defn(name="run_test")
    async def run_test(self, req: StepRequest) -> StepOutcome:
        """A sandboxed command, or a kube verb as a server-side dry run (whatever the plan says)."""
        action = req.step.action
        if isinstance(action, KubeAction):
            return await self._kube_verb(req, action.model_copy(update={"dry_run": True}))
        if not isinstance(action, CommandAction):
            raise rejected("test steps must be commands or kube verbs")
        return await self._command(req, action, sandbox=True)

    @activity.defn(name="deploy_step")
    async def deploy_step(self, req: StepRequest) -> StepOutcome:
        action = req.step.action
        if isinstance(action, GitPushAction):
            if not req.repo:
                raise rejected("git_push needs the playbook's repo")

            def run() -> StepOutcome:
                assert req.repo
                repo = self._repo(req.repo)
                wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir)
                pushed = repo.push(wt, action.branch, action.remote)
                what = "pushed" if pushed else "already on the remote (not pushed again)"
                # The commit now on the branch, for a later gitops_sync: the (rebased) fix we pushed,
                # or the equivalent one the remote already had.
                revision = (
                    repo.find_fix_commit(wt, req.incident_id)
                    if pushed
                    else repo.trailer_commit_on(
                        action.branch, req.incident_id, rollback=False, remote=action.remote
                    )
                )
                return StepOutcome(
                    ok=True,
                    detail=f"{action.remote}/{action.branch}: {what}",
                    changed=pushed,
                    revision=revision,
                )

            return await self._thread(run, req.incident_id)
        return await self._run_plain(req)

    @activity.defn(name="verify_fix")
    async def verify_fix(self, req: VerifyRequest) -> VerifyOutcome:
        """Poll Prometheus until the condition held for `hold_for`, heartbeating meanwhile."""
        v = req.verify
        prom = self._prometheus()
        result = await self._thread(
            functools.partial(
                prom.verify,
                v.query,
                v.condition,
                v.hold_for_seconds,
                v.timeout_seconds,
                poll_interval=self.settings.verify_poll_seconds,
            ),
            req.incident_id,
        )
        samples = list(result.samples)[-50:]
        if not result.ok:
            return VerifyOutcome(ok=False, reason=result.reason, samples=samples)
        if v.alert_resolved and self.alertmanager is not None:
            state = await self.check_firing(req.alert)
            if state == "firing":
                return VerifyOutcome(
                    ok=False, reason="the metric recovered but the alert still fires", samples=samples
                )
        return VerifyOutcome(ok=True, reason=result.reason, samples=samples)

    @activity.defn(name="rollback_fix")
    async def rollback_fix(self, req: RollbackRequest) -> str:
        """Revert the fix commit, push it the way the fix was deployed, and confirm it landed."""

        def run() -> str:
            repo = self._repo(req.repo)
            wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir)
            sha: str = repo.revert_fix(wt, req.incident_id)
            for step in req.deploy:
                if isinstance(step.action, GitPushAction):
                    repo.push(wt, step.action.branch, step.action.remote)
                    if not repo.remote_contains(step.action.remote, step.action.branch, sha):
                        raise RuntimeError(f"rollback commit {sha[:12]} is not on {step.action.branch}")
            return sha

        return await self._thread(run, req.incident_id)

    def all(self) -> list[Callable[..., object]]:
        return [
            self.match_playbook,
            self.resolve_candidate,
            self.acquire_run,
            self.deliver_grants,
            self.check_firing,
            self.run_checks,
            self.prepare_worktree,
            self.apply_step,
            self.commit_fix,
            self.run_test,
            self.deploy_step,
            self.verify_fix,
            self.rollback_fix,
        ]
