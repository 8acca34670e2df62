"""RemediationWorkflow: one playbook's fix → test → deploy → verify → rollback, as a child of
the incident.

Its workflow id is `remediation-<target>`, so Temporal itself guarantees one remediation at a
time per target across incidents and workers. Each completed step is recorded in history
before the next one starts, and the fix commit carries the incident id in a trailer, so a
crashed worker resumes without making a second commit or a second deploy.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.gitops import (
        CloseRequest,
        ForgeEvent,
        PollRequest,
        PullRequestRequest,
        PullRequestState,
        RevisionRequest,
        SyncRequest,
        SyncState,
    )
    from models.plan import GitopsSyncAction, GitPushAction, PlannedStep, PullRequestAction
    from models.remediation import (
        CheckReport,
        ChecksRequest,
        CommitRequest,
        FiringRequest,
        Progress,
        ProgressBatch,
        RemediationInput,
        RemediationResult,
        RollbackRequest,
        StepOutcome,
        StepRecord,
        StepRequest,
        VerifyOutcome,
        VerifyRequest,
        WorktreeInfo,
        WorktreeRequest,
    )
    from models.tickets import CommentRequest
    from workflows import gitops_rules
    from workflows import remediation_rules as rules
    from workflows.incident_rules import root_cause
    from workflows.local_activity import execute_local

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")

#: Marks histories where steps are reported in batches, one signal and one ticket comment per
#: milestone (see `_progress`), instead of one signal and one comment per step, and where the
#: short steps (`rules.LOCAL_ACTIVITIES`) and those comments run as local activities.
PATCH_LEAN_REMEDIATION = "lean-remediation-v1"


class StepFailed(Exception):
    pass


class NotDeployed(StepFailed):
    """The first deploy step, a pull request, ended unmerged: nothing reached the base branch."""


class HandedOver(StepFailed):
    """A person merged the request after someone else pushed to it: what was deployed is not
    what selfheal made and tested, so it neither verifies nor reverts it."""


@workflow.defn
class RemediationWorkflow:
    @workflow.init
    def __init__(self, inp: RemediationInput) -> None:
        self._inp = inp
        self._steps: list[StepRecord] = []
        self._fix_commit: str | None = None
        self._worktree: WorktreeInfo | None = None
        #: GitOps path only: what the deploy put on the base branch, and the merged request.
        self._revision: str | None = None
        self._merged: PullRequestState | None = None
        self._pr_wake = False
        self._merge_approver: str | None = None
        #: Steps not yet reported (batched progress): sent with the next milestone.
        self._unsent: list[Progress] = []

    @workflow.query
    def steps(self) -> list[StepRecord]:
        return self._steps

    @workflow.signal
    def forge_event(self, event: ForgeEvent) -> None:
        """A forge webhook about this incident's pull request: look again now instead of at the
        next poll. Only state changes here; the wait asks the forge itself."""
        if event.incident_id == self._inp.incident_id:
            self._pr_wake = True

    @workflow.run
    async def run(self, inp: RemediationInput) -> RemediationResult:
        await self._progress("remediation_started", rules.started_message(inp.plan, inp.approved_by))

        try:
            checked = await self._prechecks()
        except StepFailed as err:
            return await self._finish("failed", f"{err} (nothing was changed)")
        if checked is not None:
            return await self._finish("skipped", checked)
        return await self._apply()

    async def _prechecks(self) -> str | None:
        """Why not to act (resolved, not confirmed), or None to go ahead."""
        inp = self._inp
        plan = inp.plan
        if plan.policy.require_firing:
            firing: str = await self._act(
                "check_firing",
                FiringRequest(
                    fingerprint=inp.alert.fingerprint, labels=inp.alert.labels, status=inp.alert.status
                ),
                str,
                "check still firing",
                phase="precheck",
            )
            if firing == "resolved":
                return "the alert had already resolved in Alertmanager: no action"
        if plan.diagnose:
            report: CheckReport = await self._act(
                "run_checks",
                ChecksRequest(incident_id=inp.incident_id, checks=plan.diagnose),
                CheckReport,
                "diagnose",
                phase="diagnose",
            )
            if not report.ok:
                return "diagnosis did not confirm the pattern: " + "; ".join(report.lines)
        return None

    async def _apply(self) -> RemediationResult:
        """Fix, test, deploy, verify; roll back whatever was deployed when a step fails."""
        inp = self._inp
        plan = inp.plan
        deployed = False
        try:
            if plan.repo:
                self._worktree = await self._act(
                    "prepare_worktree",
                    WorktreeRequest(incident_id=inp.incident_id, repo=plan.repo),
                    WorktreeInfo,
                    "prepare worktree",
                    phase="fix",
                )
                self._fix_commit = self._worktree.fix_commit
            if self._fix_commit is None:
                for step in plan.fix:
                    await self._step("apply_step", step)
                if plan.repo:
                    assert self._worktree is not None
                    self._fix_commit = await self._act(
                        "commit_fix",
                        CommitRequest(
                            incident_id=inp.incident_id,
                            repo=plan.repo,
                            worktree=self._worktree.path,
                            message=rules.commit_message(plan),
                        ),
                        str,
                        "commit fix",
                        phase="fix",
                    )
            else:
                await self._progress(
                    "fix_found", f"fix commit {self._fix_commit[:12]} already made; not redoing it"
                )
            for step in plan.test:
                await self._step("run_test", step)
            await self._progress("deploying", f"deploying the fix to {plan.target}")
            deployed = True
            for step in plan.deploy:
                if isinstance(step.action, PullRequestAction):
                    self._merged = await self._pull_request(step)
                    self._revision = self._merged.merge_commit
                elif isinstance(step.action, GitopsSyncAction):
                    await self._gitops_sync(step, self._revision)
                else:
                    deployed_by = await self._step("deploy_step", step)
                    if plan.uses_gitops() and deployed_by.revision:
                        self._revision = deployed_by.revision
            if plan.verify is not None:
                await self._progress(
                    "verifying", f"verifying: {plan.verify.query} {plan.verify.condition}", "verifying"
                )
                outcome: VerifyOutcome = await self._act(
                    "verify_fix",
                    VerifyRequest(
                        incident_id=inp.incident_id,
                        verify=plan.verify,
                        alert=FiringRequest(fingerprint=inp.alert.fingerprint, labels=inp.alert.labels),
                    ),
                    VerifyOutcome,
                    "verify",
                    phase="verify",
                    timeout_seconds=plan.verify.timeout_seconds + 120,
                )
                if not outcome.ok:
                    raise StepFailed(f"verification failed: {outcome.reason}")
        except StepFailed as err:
            reason = str(err)
            nothing = not deployed or isinstance(err, NotDeployed)
            if nothing and not rules.non_git_fix_ran(self._steps):
                return await self._finish("failed", f"{reason} (nothing was deployed)")
            if isinstance(err, HandedOver):
                return await self._finish("failed", f"{reason}; not verified, not rolled back")
            rolled_back = await self._rollback(reason)
            if not rolled_back and plan.uses_gitops():
                return await self._finish("failed", f"{reason}; ROLLBACK FAILED: humans must restore it")
            return await self._finish("rolled_back", f"{reason}; the fix was rolled back")
        return await self._finish("healed", "fix deployed and verified")

    # --- steps ---------------------------------------------------------------------------------

    async def _step(self, activity: str, step: PlannedStep) -> StepOutcome:
        inp = self._inp
        req = StepRequest(
            incident_id=inp.incident_id,
            repo=inp.plan.repo,
            worktree=self._worktree.path if self._worktree else None,
            step=step,
            alert_starts_at=inp.alert.startsAt,
        )
        name = rules.step_name(step)
        outcome: StepOutcome = await self._act(
            activity,
            req,
            StepOutcome,
            name,
            phase=step.phase,
            timeout_seconds=rules.step_timeout_seconds(step),
        )
        if not outcome.ok:
            raise StepFailed(f"{name} failed: {outcome.detail}")
        return outcome

    async def _rollback(self, reason: str) -> bool:
        """Undo what was deployed; whether it was (the GitOps path confirms merged and synced)."""
        inp = self._inp
        plan = inp.plan
        await self._progress("rolling_back", f"rolling back: {reason}", "remediating")
        try:
            if plan.rollback == "auto" and plan.uses_gitops():
                await self._rollback_gitops(reason)
            elif plan.rollback == "auto":
                if plan.repo and self._worktree is not None and self._fix_commit:
                    commit: str = await self._act(
                        "rollback_fix",
                        RollbackRequest(
                            incident_id=inp.incident_id,
                            repo=plan.repo,
                            worktree=self._worktree.path,
                            deploy=plan.deploy,
                        ),
                        str,
                        "rollback (revert fix and redeploy)",
                        phase="rollback",
                    )
                    await self._progress(
                        "rolled_back", f"revert {commit[:12]} deployed and confirmed on the remote"
                    )
                else:
                    await self._progress(
                        "rollback_manual", "automatic rollback needs a git fix; nothing to revert"
                    )
            else:
                for step in plan.rollback:
                    if isinstance(step.action, GitopsSyncAction):  # to the branch head as it is now
                        await self._gitops_sync(step, None)
                    else:
                        await self._step(rules.rollback_activity(step), step)
                await self._progress("rolled_back", "rollback steps completed")
        except (StepFailed, ActivityError) as err:
            await self._progress("rollback_failed", f"ROLLBACK FAILED: {err}")
            return False
        return True

    # --- the GitOps path (new step kinds only: plans without them never come here) -------------

    async def _pull_request(
        self, step: PlannedStep, *, revert_of: str | None = None, why: str = ""
    ) -> PullRequestState:
        """The merged request. Whatever stops it short of a merge (closed, moved, timed out, the
        forge refusing) is NotDeployed when it is the deploy's first step: nothing reached the
        base branch, so there is nothing to roll back."""
        try:
            return await self._open_and_wait(step, revert_of=revert_of, why=why)
        except (NotDeployed, HandedOver):
            raise
        except StepFailed as err:
            first = revert_of is None and step.phase == "deploy" and step.index == 0
            raise (NotDeployed(str(err)) if first else err) from err

    async def _open_and_wait(self, step: PlannedStep, *, revert_of: str | None, why: str) -> PullRequestState:
        """Open the request (or find it), then wait durably for its merge: short polls between
        durable timers, woken early by a forge webhook; never an activity held for hours."""
        inp = self._inp
        plan = inp.plan
        action = step.action
        assert isinstance(action, PullRequestAction) and plan.repo
        what = "revert pull request" if revert_of else "pull request"
        state: PullRequestState = await self._act(
            "open_pull_request",
            PullRequestRequest(
                incident_id=inp.incident_id,
                repo=plan.repo,
                action=action,
                title=gitops_rules.pr_title(plan, inp.incident_id, revert=revert_of is not None),
                body=gitops_rules.pr_body(
                    plan,
                    incident_id=inp.incident_id,
                    ticket_key=inp.ticket_key,
                    alert=inp.alert,
                    steps=self._steps,
                    revert_reason=why,
                ),
                revert_of=revert_of,
            ),
            PullRequestState,
            f"{what} ({action.merge} merge)",
            phase=step.phase,
        )
        await self._progress(
            "pull_request", f"{what} #{state.number}: {state.url} ({state.detail})", "remediating"
        )
        started = workflow.now()
        deadline = started + timedelta(seconds=action.timeout_seconds)
        poll = gitops_rules.poll_seconds(state.poll_seconds, action.timeout_seconds)
        while True:
            verdict = gitops_rules.verdict(state)
            if verdict == "merged":
                if action.merge_approves:
                    self._merge_approver = state.merged_by
                await self._record(
                    step.phase, f"{what} merged", "ok", started, gitops_rules.merged_message(state, action)
                )
                return state
            if verdict != "wait":
                reason = gitops_rules.why_not_merged(state, what)
                if verdict == "moved" and state.status == "open":
                    await self._quiet(
                        "close_pull_request",
                        CloseRequest(
                            incident_id=inp.incident_id,
                            repo=plan.repo,
                            number=state.number,
                            comment=gitops_rules.moved_comment(state),
                            close=False,
                        ),
                        bool,
                    )
                await self._record(step.phase, f"{what} not merged", "failed", started, reason)
                if state.status == "merged":
                    raise HandedOver(reason)
                raise StepFailed(reason)
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                reason = gitops_rules.timed_out(state, what, action.timeout_seconds)
                await self._quiet(
                    "close_pull_request",
                    CloseRequest(
                        incident_id=inp.incident_id,
                        repo=plan.repo,
                        number=state.number,
                        comment=gitops_rules.timeout_comment(action.timeout_seconds),
                        close=True,
                    ),
                    bool,
                )
                await self._record(step.phase, f"{what} not merged", "failed", started, reason)
                raise StepFailed(reason)
            try:
                await workflow.wait_condition(
                    lambda: self._pr_wake,
                    timeout=timedelta(seconds=min(poll, remaining)),
                    timeout_summary="pull request merged or closed",
                )
            except TimeoutError:
                pass
            # Consumed only now: an event that came while the request was being opened (or during
            # the previous look) still wakes this wait at once.
            self._pr_wake = False
            polled = await self._quiet(
                "poll_pull_request",
                PollRequest(
                    incident_id=inp.incident_id,
                    repo=plan.repo,
                    number=state.number,
                    expected_head=state.expected_head,
                    merge=action.merge,
                ),
                PullRequestState,
            )
            state = polled or state

    async def _gitops_sync(self, step: PlannedStep, revision: str | None) -> None:
        """Sync, then wait until the tool runs `revision` (or later) and is healthy; a timeout fails
        the step with what was last seen."""
        inp = self._inp
        plan = inp.plan
        action = step.action
        assert isinstance(action, GitopsSyncAction) and plan.repo
        name = rules.step_name(step)
        req = SyncRequest(incident_id=inp.incident_id, repo=plan.repo, action=action, revision=revision)
        state: SyncState = await self._act("gitops_sync_start", req, SyncState, name, phase=step.phase)
        req = req.model_copy(update={"revision": state.revision})
        started = workflow.now()
        deadline = started + timedelta(seconds=action.timeout_seconds)
        while not state.done:
            if state.failed:
                await self._record(step.phase, f"{name} wait", "failed", started, state.detail)
                raise StepFailed(f"{name} failed: {state.detail}")
            remaining = (deadline - workflow.now()).total_seconds()
            if remaining <= 0:
                detail = f"not synced within {action.timeout_seconds:g}s; last seen: {state.detail}"
                await self._record(step.phase, f"{name} wait", "failed", started, detail)
                raise StepFailed(f"{name} failed: {detail}")
            await workflow.sleep(timedelta(seconds=min(state.poll_seconds, remaining)))
            state = await self._quiet("gitops_sync_status", req, SyncState) or state
        await self._record(step.phase, f"{name} wait", "ok", started, state.detail)

    async def _rollback_gitops(self, reason: str) -> None:
        """A revert pull request (or the revert pushed as the fix was), confirmed merged, then the
        same syncs as the deploy, to the revert's commit. Raises StepFailed when any part fails."""
        inp = self._inp
        plan = inp.plan
        assert plan.repo
        pr_step = gitops_rules.pull_request_step(plan)
        if pr_step is not None:
            if self._merged is None or not self._merged.merge_commit:
                await self._progress(
                    "rollback_not_needed", "the pull request was never merged: nothing to revert"
                )
                return
            revert = await self._pull_request(
                gitops_rules.revert_step(pr_step), revert_of=self._merged.merge_commit, why=reason
            )
            revision = revert.merge_commit
            done = f"revert pull request #{revert.number} merged as {(revision or '')[:12]}"
        else:
            if self._worktree is None or not self._fix_commit:
                raise StepFailed("automatic rollback needs a git fix; nothing to revert")
            push = next(s.action for s in plan.deploy if isinstance(s.action, GitPushAction))
            await self._act(
                "rollback_fix",
                RollbackRequest(
                    incident_id=inp.incident_id,
                    repo=plan.repo,
                    worktree=self._worktree.path,
                    deploy=plan.deploy,
                ),
                str,
                "rollback (revert fix and push)",
                phase="rollback",
            )
            revision = await self._act(
                "pushed_revision",
                RevisionRequest(
                    incident_id=inp.incident_id, repo=plan.repo, branch=push.branch, remote=push.remote
                ),
                str,
                "revert on the remote",
                phase="rollback",
            )
            done = f"revert {str(revision)[:12]} pushed to {push.remote}/{push.branch}"
        for step in plan.deploy:
            if isinstance(step.action, GitopsSyncAction):
                await self._gitops_sync(step.model_copy(update={"phase": "rollback"}), revision)
        synced = " and synced" if any(isinstance(s.action, GitopsSyncAction) for s in plan.deploy) else ""
        await self._progress("rolled_back", f"{done}{synced}: rolled back")

    async def _quiet(self, activity: str, arg: Any, result_type: type[R]) -> R | None:
        """A look during a wait: not a step (no record, no ticket comment); None when it failed
        for now (the wait goes on), StepFailed when it can never succeed (bad token, not found)."""
        try:
            result: R = await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=timedelta(seconds=self._inp.activity_timeout_seconds),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=1),
                    maximum_interval=timedelta(seconds=30),
                    maximum_attempts=3,
                    non_retryable_error_types=["RemediationRejected"],
                ),
            )
        except ActivityError as err:
            cause = root_cause(err)
            if getattr(cause, "non_retryable", False):
                raise StepFailed(f"{activity} failed: {str(cause)[:300]}") from err
            workflow.logger.warning("%s failed, looking again later: %s", activity, cause)
            return None
        return result

    async def _act(
        self,
        activity: str,
        arg: Any,
        result_type: type[Any],
        name: str,
        *,
        phase: str,
        timeout_seconds: float | None = None,
    ) -> Any:
        started = workflow.now()
        options: dict[str, Any] = {
            "result_type": result_type,
            "start_to_close_timeout": timedelta(
                seconds=timeout_seconds or self._inp.activity_timeout_seconds
            ),
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(seconds=1),
                maximum_interval=timedelta(seconds=30),
                maximum_attempts=5,
                non_retryable_error_types=["RemediationRejected"],
            ),
        }
        try:
            if activity in rules.LOCAL_ACTIVITIES and workflow.patched(PATCH_LEAN_REMEDIATION):
                # Short and in-process: one marker instead of an activity's three events and the
                # workflow task its completion wakes.
                result = await execute_local(activity, arg, **options)
            else:
                result = await workflow.execute_activity(
                    activity, arg, heartbeat_timeout=timedelta(seconds=15), **options
                )
        except ActivityError as err:
            cause = root_cause(err)
            await self._record(phase, name, "failed", started, str(cause)[:500])
            raise StepFailed(f"{name} failed: {str(cause)[:300]}") from err
        ok = rules.result_ok(result)
        await self._record(phase, name, "ok" if ok else "failed", started, rules.result_detail(result))
        return result

    async def _record(self, phase: str, name: str, status: str, started: Any, detail: str) -> None:
        seconds = (workflow.now() - started).total_seconds()
        rec = StepRecord(
            phase=phase, name=name, status=status, started=started, seconds=seconds, detail=detail
        )
        self._steps.append(rec)
        await self._progress("step", rules.step_line(phase, name, status, seconds, detail))

    async def _progress(self, kind: str, message: str, stage: str | None = None) -> None:
        """Tell the incident (timeline, stage) and write the step on the ticket.

        Steps are held back until the next milestone (`rules.BATCHED_KINDS`), then sent together:
        one signal and one comment per milestone rather than per step, which was most of a heal's
        history events and of the incident's wake-ups."""
        if not workflow.patched(PATCH_LEAN_REMEDIATION):
            await self._report([Progress(kind=kind, message=message, stage=stage)], "remediation_progress")
            return
        self._unsent.append(Progress(kind=kind, message=message, stage=stage, at=workflow.now()))
        if kind in rules.BATCHED_KINDS:
            return
        batch, self._unsent = self._unsent, []
        await self._report(batch, "remediation_progress_batch")

    async def _report(self, batch: list[Progress], signal: str) -> None:
        inp = self._inp
        info = workflow.info()
        parent = workflow.get_external_workflow_handle(inp.parent_workflow_id)
        comment = CommentRequest(
            incident_id=inp.incident_id,
            key=inp.ticket_key,
            body=rules.progress_batch_comment(inp.plan.playbook, [p.message for p in batch]),
            dedup_key=rules.progress_dedup_key(
                inp.incident_id, info.workflow_id, info.run_id, len(self._steps), batch[-1].kind
            ),
        )
        options: dict[str, Any] = {
            "result_type": bool,
            "start_to_close_timeout": timedelta(seconds=30),
            "retry_policy": RetryPolicy(maximum_attempts=5),
        }
        try:
            if signal == "remediation_progress":
                await parent.signal(signal, batch[0])
                await workflow.execute_activity("comment_ticket", comment, **options)
            else:
                await parent.signal(signal, ProgressBatch(items=batch))
                # A local activity: one marker instead of an activity's three events and the
                # workflow task its completion wakes.
                await execute_local("comment_ticket", comment, **options)
        except ActivityError:
            workflow.logger.warning("could not comment remediation progress on %s", inp.ticket_key)

    async def _finish(self, outcome: str, reason: str) -> RemediationResult:
        await self._progress("remediation_" + outcome, reason)
        return RemediationResult(
            outcome=outcome,
            reason=reason,
            fix_commit=self._fix_commit,
            steps=self._steps,
            approved_by=self._merge_approver,
        )
