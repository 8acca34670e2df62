"""IncidentWorkflow: one durable incident per Alertmanager alert group.

Deterministic and I/O-free: all effects go through activities named by string, so this module
never imports connectors. State is an explicit stage machine exposed by a query, memo and
search attributes, and carried across continue-as-new.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    FailureError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from models import ids
    from models.coding import CodingResult
    from models.control import RunGrant, RunRequest
    from models.draft import DraftRequest, DraftResult
    from models.evidence import Evidence
    from models.incident import (
        Decision,
        IncidentView,
        Notification,
        Outcome,
        RefusedDecision,
        RemediationSummary,
        Stage,
        TicketRef,
        TimelineEvent,
    )
    from models.incident_state import IncidentInput, IncidentState
    from models.investigation import Investigation, ProposedFix
    from models.plan import MatchResult, RemediationPlan
    from models.remediation import (
        CheckReport,
        ChecksRequest,
        CodingRequest,
        InvestigationRequest,
        MatchRequest,
        Progress,
        ProgressBatch,
        ProposalPlan,
        ProposalRequest,
        RemediationInput,
        RemediationResult,
        Resolution,
        ResolveRequest,
    )
    from models.tickets import (
        CloseRequest,
        CloseResult,
        CommentRequest,
        EscalationRequest,
        EvidenceRequest,
        OpenTicketRequest,
        TransitionRequest,
    )

    # Pure functions with no state: passed through like the models, not re-imported per instance.
    from workflows import incident_rules as rules
    from workflows.incident_rules import cause
    from workflows.local_activity import execute_local


NOT_AWAITING = "NotAwaitingDecision"
#: The error type of an approval whose `plan_digest` is not the current plan's (a refusal).
PLAN_CHANGED = "PlanChanged"
#: Marks histories made since playbook remediation joined the workflow (replay safety).
PATCH_REMEDIATION = "remediation-v1"
#: Marks histories made since evidence gathering and the incident store joined the workflow.
PATCH_EVIDENCE = "evidence-v1"
#: Marks histories made since the investigator (and the rewritten ticket page) joined the workflow.
PATCH_INVESTIGATION = "investigation-v1"
#: Marks histories that upsert search attributes only when a value changed (not per notification).
PATCH_SEARCH_ATTRIBUTES_ON_CHANGE = "search-attributes-on-change-v1"
#: Marks histories where diagnose chooses among several matching playbooks (or resolves `from: query`
#: params) in the incident, before proposing or running one.
PATCH_DIAGNOSE_CHOICE = "diagnose-choice-v1"
#: Marks histories where an investigation's proposed revert or patch, when no playbook plan exists,
#: is planned (activity `plan_proposal`) so that an approval runs it like a playbook.
PATCH_PROPOSAL_PLAN = "proposal-plan-v1"
#: Marks histories where, with no plan after the investigation and `investigation.coding_agent`
#: enabled, the coding agent (child workflow `CodingAgentWorkflow`) drafts a patch that is planned
#: as the incident's proposal when its tests pass.
PATCH_CODING_AGENT = "coding-agent-v1"

#: Marks histories where an incident healed by an approved proposal drafts a playbook as it closes
#: (activity `draft_playbook`): the loop learns the fix an approver chose.
PATCH_PLAYBOOK_DRAFT = "playbook-draft-v1"
#: Marks histories where incidents are worked on in turns under `max_concurrent` (each slot released
#: by a `release_run` signal to the control workflow), short activities run as local activities and
#: the ticket is closed out by one activity.
PATCH_LEAN_HEAL = "lean-heal-v1"
#: How long an `acquire_run` attempt waits for its turn before asking again (keeping its place).
ADMISSION_WAIT_SECONDS = 300.0
#: A slot whose release never comes (the incident was terminated) frees itself after this long.
TURN_LEASE_SECONDS = 3600.0
#: Asking the control workflow for a run or a turn: an answer that does not come is transient (a
#: busy worker, the control workflow being restarted), so keep asking for minutes.
ACQUIRE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=1.5,
    maximum_interval=timedelta(seconds=15),
    maximum_attempts=30,
)
#: Child workflows (the LLM investigator, the fix) start by name from `models.ids`: importing their
#: modules would re-run them in every incident's sandbox.


@workflow.defn
class IncidentWorkflow:
    @workflow.init
    def __init__(self, inp: IncidentInput) -> None:
        self._policy = inp.policy
        self._pending: list[Notification] = list(inp.pending)
        self._decision: Decision | None = None
        self._comments: list[CommentRequest] = []
        #: This incident holds one of the `max_concurrent` slots (`_take_turn`) until `_give_way`.
        self._holds_turn = False
        #: This incident's fix holds one of the bounded run slots (`_remediate`) until `_give_way`.
        self._holds_slot = False
        #: The running fix waits on a pull request (reported by the child): see `_give_way`.
        self._fix_waits_on_forge = False
        if inp.state is not None:
            self._state = inp.state
        else:
            self._state = IncidentState(
                view=IncidentView(
                    id=inp.incident_id,
                    group_id=inp.group_id,
                    group_key="",
                    receiver="",
                    stage=Stage.RECEIVED,
                    status="firing",
                    opened_at=workflow.now(),
                )
            )

    @property
    def _view(self) -> IncidentView:
        return self._state.view

    # --- handlers -----------------------------------------------------------------------------

    @workflow.signal
    def notify(self, notification: Notification) -> None:
        """A full snapshot of the alert group from Alertmanager; processed in arrival order."""
        self._pending.append(notification)

    @workflow.signal
    def remediation_progress(self, progress: Progress) -> None:
        """Steps reported by the child RemediationWorkflow: timeline and stage."""
        if progress.stage:
            self._set_stage(Stage(progress.stage))
        self._event(progress.kind, progress.message)
        self._fix_waits_on_forge |= progress.kind == rules.WAITS_ON_FORGE

    @workflow.signal
    def remediation_progress_batch(self, batch: ProgressBatch) -> None:
        """Several steps at once (a child that batches its reports); each keeps its own time.
        Only state changes here, like `remediation_progress`."""
        for progress in batch.items:
            if progress.stage:
                self._set_stage(Stage(progress.stage))
            self._event(progress.kind, progress.message, at=progress.at)
            self._fix_waits_on_forge |= progress.kind == rules.WAITS_ON_FORGE

    @workflow.signal
    def decision_refused(self, refused: RefusedDecision) -> None:
        """A decision that did not count, for the timeline (once per attempt, however redelivered).
        Only state changes here: no command, so histories without this signal replay unchanged."""
        if any(
            e.kind == "decision_refused" and e.data.get("dedup") == refused.dedup for e in self._view.timeline
        ):
            return
        self._event(
            "decision_refused",
            rules.refusal_text(refused),
            {"by": refused.by, "via": refused.via, "dedup": refused.dedup},
        )

    @workflow.query
    def view(self) -> IncidentView:
        return self._view

    @workflow.update
    async def decide(self, decision: Decision) -> IncidentView:
        """A human decision; answered once the workflow has recorded it (its effects follow)."""
        self._decision = decision
        await workflow.wait_condition(lambda: self._view.decision is not None)
        return self._view

    @decide.validator
    def _validate_decision(self, decision: Decision) -> None:
        if self._view.stage != Stage.AWAITING_DECISION or self._decision is not None:
            raise ApplicationError(
                f"incident {self._view.id} is {self._view.stage.value}, not awaiting a decision",
                type=NOT_AWAITING,
            )
        # A rejected update leaves no event in history: this check is replay-safe as it stands.
        problem = rules.digest_problem(decision, self._view.proposal, self._state.plan)
        if problem:
            raise ApplicationError(problem, type=PLAN_CHANGED)

    # --- main loop -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: IncidentInput) -> IncidentView:
        if inp.state is None:
            self._event("received", "incident opened")
        self._absorb_pending(comment=False)
        while self._view.ticket is None:
            await self._open_ticket()
            self._absorb_pending(comment=self._view.ticket is not None)
        if self._view.stage in (Stage.RECEIVED, Stage.TICKETED):
            self._set_stage(Stage.TICKETED)
            await self._take_turn()
            if workflow.patched(PATCH_EVIDENCE):
                await self._gather_evidence()
            if workflow.patched(PATCH_REMEDIATION):
                await self._consider_playbooks()
                await self._give_way()
                if self._view.closed_at is not None:
                    return self._view
                if (
                    self._state.plan is None
                    and rules.proposes_runnable(self._view.investigation)
                    and workflow.patched(PATCH_PROPOSAL_PLAN)
                ):
                    await self._plan_proposal()
                if (
                    self._state.plan is None
                    and self._policy.coding_agent
                    and workflow.patched(PATCH_CODING_AGENT)
                ):
                    await self._draft_patch()
            await self._give_way()
            await self._escalate(first=True)
        await self._flush_comments()

        while True:
            if self._decision is not None:
                decision = self._decision
                plan = self._state.plan
                if plan is not None and rules.runs_fix(decision, plan):
                    self._view.decision = decision
                    self._event("decision", rules.approved_fix_message(decision))
                    if await self._remediate(plan, approved_by=decision.by):
                        break
                    self._decision = None
                    self._view.decision = None
                    self._state.rounds += 1
                    await self._escalate(first=True)
                    continue
                await self._close_on_decision(decision)
                break
            if self._pending:
                self._absorb_pending(comment=True)
                await self._flush_comments()
                continue
            if self._state.resolved_since is not None:
                quiet_until = rules.quiet_until(
                    self._state.resolved_since, self._policy.resolve_quiet_seconds
                )
                if workflow.now() >= quiet_until:
                    await self._close_resolved()
                    break
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                if self._decision is None and not self._pending:
                    self._continue_as_new(inp)
                continue
            timeout = self._next_wakeup()
            try:
                await workflow.wait_condition(
                    lambda: bool(self._pending) or self._decision is not None,
                    timeout=timeout,
                    timeout_summary="decision or alert change",
                )
            except TimeoutError:
                due = self._state.decision_due
                if due is not None and workflow.now() >= due:
                    await self._reescalate()
        return self._view

    # --- steps ----------------------------------------------------------------------------------

    def _next_wakeup(self) -> timedelta:
        return rules.next_wakeup(
            now=workflow.now(),
            decision_due=self._state.decision_due,
            resolved_since=self._state.resolved_since,
            quiet_seconds=self._policy.resolve_quiet_seconds,
        )

    async def _open_ticket(self) -> None:
        try:
            ref: TicketRef = await self._local_activity(
                "open_ticket",
                OpenTicketRequest(view=self._view, workflow_url=self._workflow_url()),
                result_type=TicketRef,
                **self._activity_options(),
            )
        except ActivityError as err:
            self._event("ticket_failed", f"could not open the ticket, retrying: {cause(err)}")
            await workflow.sleep(timedelta(seconds=self._policy.ticket_retry_seconds))
            return
        self._view.ticket = ref
        self._set_stage(Stage.TICKETED)
        self._event("ticketed", f"ticket {ref.key} opened", {"key": ref.key, "url": ref.url})
        self._sync_memo()

    async def _escalate(self, *, first: bool) -> None:
        ticket = self._view.ticket
        assert ticket is not None
        try:
            await workflow.execute_activity(
                "escalate_ticket",
                EscalationRequest(
                    key=ticket.key,
                    incident_id=self._view.id,
                    severity=self._view.severity,
                    level=self._view.escalations,
                    reason=rules.escalation_reason(self._view.proposal, self._view.remediations)
                    if first
                    else rules.reescalation_reason(self._policy.decision_timeout_seconds),
                    dedup_key=rules.escalation_dedup_key(
                        self._view.id, self._state.rounds, self._view.escalations
                    ),
                ),
                **self._activity_options(),
            )
        except ActivityError as err:
            self._event("escalation_failed", f"escalation on the ticket failed: {cause(err)}")
        if first:
            self._set_stage(Stage.ESCALATED)
            self._event("escalated", "escalated to humans")
            self._set_stage(Stage.AWAITING_DECISION)
        self._state.decision_due = workflow.now() + timedelta(seconds=self._policy.decision_timeout_seconds)
        self._sync_memo()

    # --- evidence ---------------------------------------------------------------------------------

    async def _gather_evidence(self) -> None:
        """Investigate before deciding: evidence goes on the ticket and into the view."""
        self._set_stage(Stage.INVESTIGATING)
        try:
            evidence: Evidence = await self._local_activity(
                "gather_evidence",
                EvidenceRequest(view=self._view, workflow_url=self._workflow_url()),
                result_type=Evidence,
                start_to_close_timeout=timedelta(seconds=max(120.0, self._policy.activity_timeout_seconds)),
                retry_policy=RetryPolicy(maximum_attempts=2, non_retryable_error_types=["TrackerRejected"]),
            )
        except ActivityError as err:
            self._event("evidence_failed", f"evidence gathering failed: {cause(err)}")
            return
        self._view.evidence = evidence
        self._event("evidence", rules.evidence_message(evidence))

    async def _investigate(self, match: MatchResult | None) -> None:
        """Builtin investigation always (no network, seconds); the LLM agent after it when configured.

        The result is data for humans: it goes on the ticket page and into the view, and a fix it
        proposes never runs unless a playbook matched and its policy (or a human) says so.
        """
        if not workflow.patched(PATCH_INVESTIGATION):
            return
        self._set_stage(Stage.INVESTIGATING)
        request = InvestigationRequest(view=self._view, match=match)
        investigation: Investigation | None = None
        try:
            investigation = await self._local_activity(
                "investigate",
                request,
                result_type=Investigation,
                start_to_close_timeout=timedelta(seconds=max(120.0, self._policy.activity_timeout_seconds)),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            self._event("investigation_failed", f"builtin investigation failed: {cause(err)}")
        if self._policy.investigator == "llm":
            try:
                investigation = await workflow.execute_child_workflow(
                    ids.INVESTIGATION_AGENT_WORKFLOW,
                    request.model_copy(update={"prior": investigation}),
                    id=f"investigation-{self._view.id}",
                    result_type=Investigation,
                    execution_timeout=timedelta(minutes=30),
                    parent_close_policy=ParentClosePolicy.TERMINATE,
                )
            except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:
                self._event("investigation_failed", f"LLM investigation failed: {cause(err)}")
        if investigation is None:
            return
        self._view.investigation = investigation
        self._event(
            "investigated",
            rules.investigation_message(investigation),
            {"seconds": round(investigation.duration_seconds, 3)},
        )
        await self._update_page()

    def _closing_view(self, outcome: Outcome) -> IncidentView:
        return rules.closing_view(self._view, outcome, now=workflow.now())

    async def _update_page(self, view: IncidentView | None = None) -> None:
        """Rewrite the ticket's page (description) from the view; best effort."""
        if self._view.ticket is None or not workflow.patched(PATCH_INVESTIGATION):
            return
        try:
            await self._local_activity(
                "update_ticket_page",
                EvidenceRequest(view=view or self._view, workflow_url=self._workflow_url()),
                **self._activity_options(attempts=5),
            )
        except ActivityError as err:
            self._event("page_failed", f"could not update the ticket page: {cause(err)}")

    async def _record_closed(self, outcome: Outcome) -> None:
        """Remember the incident as it closes, for similar-incident search (best effort).

        Runs before the stage turns `closed`, so that stage is only ever seen in the final
        workflow task: a notification that sees a closed incident finds no running workflow.
        """
        if not workflow.patched(PATCH_EVIDENCE):
            return
        closing = self._closing_view(outcome)
        try:
            await workflow.execute_activity(
                "record_incident",
                closing,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
        except ActivityError as err:
            self._event("record_failed", f"could not record the incident for similarity search: {cause(err)}")

    # --- remediation ------------------------------------------------------------------------------

    async def _consider_playbooks(self) -> None:
        """Match playbooks; run the fix now in `auto` mode, otherwise keep it as the proposal."""
        try:
            match: MatchResult | None = await self._local_activity(
                "match_playbook",
                MatchRequest(incident_id=self._view.id, alerts=self._view.alerts),
                result_type=MatchResult,
                **self._activity_options(attempts=3),
            )
        except ActivityError as err:
            self._event("playbook_error", f"playbook matching failed: {cause(err)}")
            return
        if match is None:
            await self._investigate(None)
            return
        if match.needs_choice() and workflow.patched(PATCH_DIAGNOSE_CHOICE):
            await self._consider_candidates(match)
            return
        plan = match.plan
        if plan is None:
            self._event("no_playbook", rules.no_playbook_message(match))
            await self._investigate(match)
            return
        self._state.plan = plan
        self._view.proposal = rules.proposal_for(plan)
        self._event("playbook_matched", rules.playbook_matched_message(plan))
        await self._investigate(match)
        if plan.policy.mode == "auto" or plan.merge_approves():  # a merge approves: open it now
            await self._remediate(plan, approved_by=None)

    async def _plan_proposal(self, fix: ProposedFix | None = None, by: str = "") -> None:
        """The investigation proposed a revert or a patch (or the coding agent drafted `fix`) and no
        playbook applies: plan it with the service's defaults, to run only when an approver approves
        it; a refusal goes on the ticket."""
        ticket = self._view.ticket
        investigation = self._view.investigation
        if fix is None:
            assert investigation is not None and investigation.proposed_fix is not None
            fix, by = investigation.proposed_fix, investigation.investigator
        assert ticket is not None
        alert = self._view.alerts[0]  # firing ones first
        try:
            result: ProposalPlan = await workflow.execute_activity(
                "plan_proposal",
                ProposalRequest(
                    incident_id=self._view.id,
                    fix=fix,
                    alert=alert,
                    service=self._view.service,
                    service_label=rules.service_label(alert, self._policy.service_labels),
                    investigator=by,
                ),
                result_type=ProposalPlan,
                **self._activity_options(attempts=3),
            )
        except ActivityError as err:
            self._event("proposal_failed", f"could not plan the proposed fix: {cause(err)}")
            return
        if result.plan is None:
            if result.reasons:
                text = rules.proposal_refused_text(result.kind, result.reasons)
                self._event("proposal_refused", text)
                await self._comment(
                    CommentRequest(
                        incident_id=self._view.id,
                        key=ticket.key,
                        body=text,
                        dedup_key=f"{self._view.id}:proposal-refused"
                        + (":coding" if by == rules.CODING_AGENT else ""),
                    )
                )
            return
        self._state.plan = result.plan
        self._view.proposal = rules.proposal_for(
            result.plan, kind=result.kind, description=result.description
        )
        self._event("proposal_planned", rules.proposal_planned_message(self._view.proposal))
        await self._update_page()

    async def _draft_patch(self) -> None:
        """No revert applies: the coding agent drafts a patch with a test in a fresh worktree (a child
        workflow). Its patch, test output and summary go on the ticket; a patch whose tests pass
        becomes the proposal, planned like the investigation's and run only once approved."""
        ticket = self._view.ticket
        assert ticket is not None
        alert = self._view.alerts[0]  # firing ones first
        self._set_stage(Stage.INVESTIGATING)
        self._event("coding_started", "no revert applies: the coding agent drafts a patch")
        try:
            result: CodingResult = await workflow.execute_child_workflow(
                ids.CODING_AGENT_WORKFLOW,
                CodingRequest(
                    incident_id=self._view.id,
                    service=self._view.service,
                    service_label=rules.service_label(alert, self._policy.service_labels),
                    title=self._view.title,
                    alert=alert,
                    investigation=self._view.investigation,
                ),
                id=f"coding-{self._view.id}",
                result_type=CodingResult,
                execution_timeout=timedelta(hours=3),
                parent_close_policy=ParentClosePolicy.TERMINATE,
            )
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:
            self._event("coding_failed", f"the coding agent failed: {cause(err)}")
            return
        self._view.coding = result
        self._event(f"coding_{result.status}", rules.coding_message(result))
        await self._comment(
            CommentRequest(
                incident_id=self._view.id,
                key=ticket.key,
                body=rules.coding_comment(result),
                dedup_key=f"{self._view.id}:coding",
            )
        )
        if result.proposable:
            await self._plan_proposal(rules.coding_fix(result), rules.CODING_AGENT)
        if self._state.plan is None:
            await self._update_page()

    async def _consider_candidates(self, match: MatchResult) -> None:
        """Several playbooks match (or one needs run-time params): let diagnose choose, then go on
        as for a single match with the chosen one, its own mode and policy applying."""
        choice = await self._choose(match)
        ticket = self._view.ticket
        assert ticket is not None
        if choice.ruled_out or choice.stopped:
            await self._comment(
                CommentRequest(
                    incident_id=self._view.id,
                    key=ticket.key,
                    body=rules.choice_comment(choice),
                    dedup_key=f"{self._view.id}:diagnose-choice",
                )
            )
        plan = choice.chosen or choice.first
        if plan is None:
            missed = rules.unmatched(match, choice)
            self._event("no_playbook", rules.no_playbook_message(missed))
            await self._investigate(missed)
            return
        self._state.plan = plan
        self._view.proposal = rules.proposal_for(plan)
        if choice.chosen is None:
            # As when a single playbook's diagnose fails: nothing runs, humans get the first one.
            reason = rules.unconfirmed_reason(choice)
            self._event("playbook_unconfirmed", reason)
            self._view.remediations.append(
                RemediationSummary(playbook=plan.playbook, outcome="skipped", reason=reason)
            )
            await self._investigate(rules.chosen_match(match, plan, choice))
            return
        self._event("playbook_matched", rules.chosen_message(plan, choice))
        await self._investigate(rules.chosen_match(match, plan, choice))
        if plan.policy.mode == "auto" or plan.merge_approves():  # a merge approves: open it now
            await self._remediate(plan, approved_by=None)

    async def _choose(self, match: MatchResult) -> rules.Choice:
        """Try the candidates in precedence order, each step an activity (recorded, so a replay or
        another worker makes the same choice): resolve its `from: query` params and render it, run
        its diagnose; the first confirmed one is chosen. A query or check that cannot run stops the
        choice rather than skip to a lower candidate on no evidence."""
        choice = rules.Choice()
        alert = rules.remediation_alert(self._view.alerts, match.fingerprint)
        for candidate in match.candidates():
            plan = candidate.plan
            if plan is None:
                try:
                    resolution: Resolution = await workflow.execute_activity(
                        "resolve_candidate",
                        ResolveRequest(incident_id=self._view.id, candidate=candidate, alert=alert),
                        result_type=Resolution,
                        **self._activity_options(attempts=3),
                    )
                except ActivityError as err:
                    choice.stopped = f"{candidate.playbook}: could not resolve its params: {cause(err)}"
                    self._event("playbook_choice_stopped", choice.stopped)
                    return choice
                if resolution.plan is None:
                    why = "; ".join(resolution.reasons)
                    choice.ruled_out.append((candidate.playbook, why))
                    self._event(
                        "playbook_ruled_out",
                        rules.ruled_out_message(candidate.playbook, why),
                        {"playbook": candidate.playbook},
                    )
                    continue
                plan = resolution.plan
            choice.first = choice.first or plan
            if plan.diagnose:
                try:
                    report: CheckReport = await workflow.execute_activity(
                        "run_checks",
                        ChecksRequest(incident_id=self._view.id, checks=plan.diagnose),
                        result_type=CheckReport,
                        **self._activity_options(attempts=3),
                    )
                except ActivityError as err:
                    choice.stopped = f"{candidate.playbook}: could not run its diagnose: {cause(err)}"
                    self._event("playbook_choice_stopped", choice.stopped)
                    return choice
                if not report.ok:
                    why = rules.diagnose_failure(report.lines)
                    choice.ruled_out.append((candidate.playbook, why))
                    self._event(
                        "playbook_ruled_out",
                        rules.ruled_out_message(candidate.playbook, why),
                        {"playbook": candidate.playbook},
                    )
                    continue
            choice.chosen = plan
            return choice
        return choice

    async def _remediate(self, plan: RemediationPlan, *, approved_by: str | None) -> bool:
        """Run the plan as a child workflow (one per target); True when healed and closed."""
        ticket = self._view.ticket
        assert ticket is not None
        self._set_stage(Stage.REMEDIATING)
        started = workflow.now()
        # An approved fix (no turn held) waits in line like a new incident, oldest first; its
        # slot is released when the run is over. Within its turn an incident's fix does not wait.
        bound = 0
        if not self._holds_turn and self._policy.max_concurrent > 0 and workflow.patched(PATCH_LEAN_HEAL):
            bound = self._policy.max_concurrent
        try:
            grant: RunGrant = await workflow.execute_activity(
                "acquire_run",
                RunRequest(
                    playbook=plan.playbook,
                    target=plan.target,
                    incident_id=self._view.id,
                    max_runs=plan.policy.max_runs,
                    window_seconds=plan.policy.window_seconds,
                    cooldown_seconds=plan.policy.cooldown_seconds,
                    approved=approved_by is not None,
                    max_concurrent=bound,
                    opened_at=self._view.opened_at,
                    lease_seconds=TURN_LEASE_SECONDS,
                ),
                result_type=RunGrant,
                # One control workflow serves every incident and answers in batches; an answer that
                # does not come within the timeout (a busy worker, the control workflow being
                # restarted) is transient: keep asking for minutes before calling humans. Waiting
                # in line is not a lost answer: asking again keeps the place.
                start_to_close_timeout=timedelta(
                    seconds=max(self._policy.activity_timeout_seconds, ADMISSION_WAIT_SECONDS if bound else 0)
                ),
                retry_policy=ACQUIRE_RETRY,
            )
        except ActivityError as err:
            grant = RunGrant(allowed=False, reason=f"could not reach the control workflow: {cause(err)}")
        self._holds_slot = grant.slot
        if not grant.allowed:
            self._event("remediation_blocked", f"fix not run: {grant.reason}")
            await self._comment(
                CommentRequest(
                    incident_id=self._view.id,
                    key=ticket.key,
                    body=rules.blocked_comment(plan.playbook, grant.reason),
                    dedup_key=f"{self._view.id}:blocked:{self._state.rounds}",
                )
            )
            self._view.remediations.append(
                RemediationSummary(playbook=plan.playbook, outcome="blocked", reason=grant.reason)
            )
            return False
        child_id = ids.remediation_workflow_id(plan.target)
        waiting_noted = False
        while True:
            try:
                handle = await workflow.start_child_workflow(
                    ids.REMEDIATION_WORKFLOW,
                    RemediationInput(
                        plan=plan,
                        incident_id=self._view.id,
                        ticket_key=ticket.key,
                        parent_workflow_id=workflow.info().workflow_id,
                        alert=rules.remediation_alert(self._view.alerts, plan.alert_fingerprint),
                        approved_by=approved_by,
                        activity_timeout_seconds=max(120.0, self._policy.activity_timeout_seconds),
                    ),
                    id=child_id,
                    result_type=RemediationResult,
                    parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                )
                break
            except WorkflowAlreadyStartedError:
                if not waiting_noted:
                    waiting_noted = True
                    self._event(
                        "remediation_waiting", f"another remediation holds {plan.target}; waiting for it"
                    )
                    await self._give_way(f"another remediation holds {plan.target}")
                await workflow.sleep(timedelta(seconds=self._policy.lock_retry_seconds))
        try:
            if self._holds_slot or self._holds_turn:
                self._fix_waits_on_forge = False
                await workflow.wait_condition(lambda: handle.done() or self._fix_waits_on_forge)
                if not handle.done():
                    await self._give_way("the fix waits for its pull request")
            result: RemediationResult = await handle
        except ChildWorkflowError as err:
            # A crashed or terminated remediation must not wedge the incident: escalate instead.
            result = RemediationResult(
                outcome="failed", reason=f"the remediation workflow failed: {cause(err)}"
            )
        # The fix is over: free the slot (and this incident's turn) now, before any close-out, so
        # that a closed stage is only ever seen in the final workflow task.
        await self._give_way()
        approved_by = approved_by or result.approved_by  # a merged pull request that was the approval
        seconds = (workflow.now() - started).total_seconds()
        self._view.remediations.append(
            RemediationSummary(
                playbook=plan.playbook,
                outcome=result.outcome,
                reason=result.reason,
                fix_commit=result.fix_commit,
                approved_by=approved_by,
                seconds=seconds,
            )
        )
        self._absorb_pending(comment=True)
        await self._flush_comments()
        if result.outcome != "healed":
            return False
        if approved_by is not None and self._drafts_playbook() and workflow.patched(PATCH_PLAYBOOK_DRAFT):
            await self._draft_playbook(rules.healed_outcome(approved_by))
        await self._close_ticket_done(
            rules.healed_comment(plan.playbook, seconds, approved_by),
            "healed",
            rules.healed_outcome(approved_by),
        )
        return True

    def _drafts_playbook(self) -> bool:
        """Whether the fix that just healed was an investigation's proposal (a playbook's own run
        teaches nothing new)."""
        proposal = self._view.proposal
        return proposal is not None and proposal.kind in ("revert", "patch")

    async def _draft_playbook(self, outcome: Outcome) -> None:
        """Draft a playbook from the approved fix as the incident closes; best effort, on the
        ticket and the timeline, never in the way of closing."""
        alert = self._view.alerts[0] if self._view.alerts else None
        try:
            result: DraftResult = await workflow.execute_activity(
                "draft_playbook",
                DraftRequest(
                    view=self._closing_view(outcome),
                    service_label=rules.service_label(alert, self._policy.service_labels)
                    if alert is not None
                    else "service",
                ),
                result_type=DraftResult,
                start_to_close_timeout=timedelta(seconds=max(120.0, self._policy.activity_timeout_seconds)),
                retry_policy=RetryPolicy(maximum_attempts=5, non_retryable_error_types=["DraftFailed"]),
            )
        except ActivityError as err:
            self._event("draft_failed", f"could not draft a playbook from this fix: {cause(err)}")
            return
        kind = "playbook_drafted" if result.status == "proposed" else "playbook_draft_refused"
        data = {"name": result.name, "branch": result.branch, "pull_request": result.pull_request}
        self._event(kind, result.message, data)

    async def _take_turn(self) -> None:
        """Wait for this incident's turn: in a storm the deployment works on `max_concurrent`
        incidents at once (evidence, matching, investigation, the fix), the one that opened first
        going first, so the first incidents heal first instead of every one advancing together.
        If the control workflow cannot be reached the incident goes ahead without a turn."""
        if self._policy.max_concurrent <= 0 or not workflow.patched(PATCH_LEAN_HEAL):
            return
        asked = workflow.now()
        try:
            grant: RunGrant = await workflow.execute_activity(
                "acquire_run",
                RunRequest(
                    playbook="",
                    target="",
                    incident_id=self._view.id,
                    max_runs=0,
                    window_seconds=0,
                    cooldown_seconds=0,
                    max_concurrent=self._policy.max_concurrent,
                    opened_at=self._view.opened_at,
                    lease_seconds=TURN_LEASE_SECONDS,
                    turn=True,
                ),
                result_type=RunGrant,
                start_to_close_timeout=timedelta(
                    seconds=max(self._policy.activity_timeout_seconds, ADMISSION_WAIT_SECONDS)
                ),
                retry_policy=ACQUIRE_RETRY,
            )
        except ActivityError as err:
            self._event("turn_failed", f"went ahead without waiting for a turn: {cause(err)}")
            return
        self._holds_turn = grant.slot
        waited = (workflow.now() - asked).total_seconds()
        if waited >= 1:
            self._event("turn", rules.turn_message(waited, self._policy.max_concurrent))

    async def _give_way(self, why: str = "") -> None:
        """Hand back this incident's turn and its fix's slot. Done when the fix is over, and
        earlier when it waits on others (a pull request's merge, reviews or checks; another
        remediation of the same target), which can take hours: the incidents in line behind it
        are not held up meanwhile. What follows runs without a place in line."""
        if not (self._holds_slot or self._holds_turn):
            return
        self._holds_slot = self._holds_turn = False
        await self._release_run()
        if why:
            self._event("turn_released", rules.gave_way_message(why))

    async def _release_run(self) -> None:
        """Hand the slot back to the control workflow, for the next incident in line. If the
        signal fails the slot frees itself when its lease runs out."""
        control = workflow.get_external_workflow_handle(ids.control_workflow_id(workflow.info().task_queue))
        try:
            await control.signal("release_run", self._view.id)
        except FailureError as err:
            self._event("release_failed", f"could not release the run's slot: {cause(err)}")

    async def _reescalate(self) -> None:
        if self._view.escalations >= self._policy.max_reescalations:
            if not self._state.reescalation_limit_noted:
                self._state.reescalation_limit_noted = True
                self._event(
                    "reescalation_limit",
                    f"no decision after {self._view.escalations} re-escalations; still waiting",
                )
            self._state.decision_due = None
            return
        self._view.escalations += 1
        self._event("reescalated", f"no decision in time: re-escalation {self._view.escalations}")
        await self._escalate(first=False)

    def _absorb_pending(self, *, comment: bool) -> None:
        """Apply queued snapshots; each one that changes the alert set queues one ticket comment."""
        while self._pending:
            note = self._pending.pop(0)
            self._view.notifications += 1
            n = note.notification
            if not self._view.group_key:
                self._view.group_key = n.groupKey
                self._view.receiver = n.receiver
            before = self._view.alerts
            self._view.alerts = rules.merge_alerts(before, n.alerts)
            self._view.truncated_alerts = n.truncatedAlerts
            self._refresh_identity()
            changes = rules.describe_changes(before, self._view.alerts)
            was = self._view.status
            self._view.status = rules.group_status(self._view.alerts)
            firing = self._view.status == "firing"
            if was == "firing" and not firing:
                self._state.resolved_since = workflow.now()
                self._event("resolved", "all alerts of the group resolved; waiting for the quiet period")
            elif was == "resolved" and firing:
                self._state.resolved_since = None
                self._event("refired", "the group fires again")
            if changes:
                self._event(
                    "alerts_changed",
                    "; ".join(changes),
                    {"notification": self._view.notifications},
                )
                if comment and self._view.ticket is not None:
                    self._comments.append(
                        CommentRequest(
                            incident_id=self._view.id,
                            key=self._view.ticket.key,
                            body=rules.changes_comment(changes),
                            dedup_key=f"{self._view.id}:notification:{self._view.notifications}",
                        )
                    )
        self._sync_search_attributes()

    async def _flush_comments(self) -> None:
        while self._comments:
            req = self._comments.pop(0)
            await self._comment(req)

    async def _comment(self, req: CommentRequest) -> None:
        try:
            await workflow.execute_activity(
                "comment_ticket", req, result_type=bool, **self._activity_options()
            )
        except ActivityError as err:
            self._event("comment_failed", f"comment on {req.key} failed: {cause(err)}")

    async def _close_on_decision(self, decision: Decision) -> None:
        ticket = self._view.ticket
        assert ticket is not None
        self._view.decision = decision
        text = rules.decision_text(decision, self._view.investigation)
        self._event("decision", text, {"decision": decision.decision.value, "by": decision.by})
        await self._comment(
            CommentRequest(
                incident_id=self._view.id, key=ticket.key, body=text, dedup_key=f"{self._view.id}:decision"
            )
        )
        outcome = rules.decision_outcome(decision)
        await self._update_page(self._closing_view(outcome))
        await self._record_closed(outcome)
        self._close(outcome)

    async def _close_resolved(self) -> None:
        await self._close_ticket_done(
            rules.resolved_comment(self._policy.resolve_quiet_seconds), "resolved", Outcome.RESOLVED
        )

    async def _close_ticket_done(self, body: str, dedup: str, outcome: Outcome) -> None:
        """Say why on the ticket, move it to done, and close the incident."""
        ticket = self._view.ticket
        assert ticket is not None
        comment = CommentRequest(
            incident_id=self._view.id, key=ticket.key, body=body, dedup_key=f"{self._view.id}:{dedup}"
        )
        if workflow.patched(PATCH_LEAN_HEAL):
            # One activity instead of four (comment, page, transition, record): the same effects.
            try:
                result: CloseResult = await self._local_activity(
                    "close_incident",
                    CloseRequest(
                        comment=comment,
                        page=EvidenceRequest(
                            view=self._closing_view(outcome), workflow_url=self._workflow_url()
                        ),
                    ),
                    result_type=CloseResult,
                    **self._activity_options(),
                )
                for failure in result.failed:
                    self._event("close_failed", f"closing out {ticket.key}: {failure}")
            except ActivityError as err:
                self._event("close_failed", f"could not close out {ticket.key}: {cause(err)}")
            self._close(outcome)
            return
        await self._comment(comment)
        await self._update_page(self._closing_view(outcome))
        try:
            await workflow.execute_activity(
                "transition_ticket",
                TransitionRequest(incident_id=self._view.id, key=ticket.key, to_done=True),
                result_type=bool,
                **self._activity_options(),
            )
        except ActivityError as err:
            self._event("transition_failed", f"could not transition {ticket.key}: {cause(err)}")
        await self._record_closed(outcome)
        self._close(outcome)

    def _close(self, outcome: Outcome) -> None:
        self._view.outcome = outcome
        self._view.closed_at = workflow.now()
        self._state.decision_due = None
        self._set_stage(Stage.CLOSED)
        self._event("closed", rules.closed_message(outcome))
        self._sync_memo()

    def _continue_as_new(self, inp: IncidentInput) -> None:
        self._event("continued", "history compacted (continue-as-new)")
        workflow.continue_as_new(
            IncidentInput(
                incident_id=self._view.id,
                group_id=self._view.group_id,
                policy=self._policy,
                state=self._state,
                pending=self._pending,
            ),
            memo=self._memo(),
            search_attributes=self._search_attributes(),
        )

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._policy.continue_as_new_after_events
        )

    # --- bookkeeping ------------------------------------------------------------------------------

    def _refresh_identity(self) -> None:
        v = self._view
        found = rules.identity(
            v.alerts,
            alertname=v.alertname,
            severity=v.severity,
            service=v.service,
            service_labels=self._policy.service_labels,
        )
        if found is not None:
            v.alertname, v.severity, v.service = found.alertname, found.severity, found.service
            v.title = found.title

    def _set_stage(self, stage: Stage) -> None:
        if self._view.stage != stage:
            self._view.stage = stage
            self._sync_search_attributes()

    def _event(
        self, kind: str, message: str, data: dict[str, Any] | None = None, *, at: datetime | None = None
    ) -> None:
        self._view.timeline.append(
            TimelineEvent(at=at or workflow.now(), kind=kind, message=message, data=data or {})
        )
        workflow.logger.info("%s: %s", kind, message, extra={"incident_id": self._view.id})

    def _memo(self) -> dict[str, Any]:
        return rules.memo(self._view)

    def _sync_memo(self) -> None:
        workflow.upsert_memo(self._memo())

    def _search_attributes(self) -> TypedSearchAttributes:
        v = self._view
        return TypedSearchAttributes(
            [
                SearchAttributePair(ids.SA_INCIDENT_ID, v.id),
                SearchAttributePair(ids.SA_STAGE, v.stage.value),
                SearchAttributePair(ids.SA_STATUS, v.status),
                SearchAttributePair(ids.SA_SERVICE, v.service),
                SearchAttributePair(ids.SA_SEVERITY, v.severity),
                SearchAttributePair(ids.SA_ALERTNAME, v.alertname),
            ]
        )

    def _sync_search_attributes(self) -> None:
        """Upsert what changed: an Alertmanager repeat that changes nothing costs no history event."""
        wanted = self._search_attributes()
        if workflow.patched(PATCH_SEARCH_ATTRIBUTES_ON_CHANGE):
            have = workflow.info().typed_search_attributes
            changed = [p for p in wanted if have.get(p.key) != p.value]
            if changed:
                workflow.upsert_search_attributes([p.key.value_set(p.value) for p in changed])
            return
        workflow.upsert_search_attributes([p.key.value_set(p.value) for p in wanted])

    def _workflow_url(self) -> str:
        info = workflow.info()
        return rules.workflow_url(self._policy.ui_url, info.namespace, info.workflow_id)

    async def _local_activity(self, name: str, arg: Any, **options: Any) -> Any:
        """Bounded work the worker does itself (the ticket, evidence from sources that each have
        their own timeout, matching, the builtin investigation, a page rewrite, the close-out): a
        local activity in new histories, recorded as one marker instead of an activity's three
        events and the workflow task its completion wakes."""
        if workflow.patched(PATCH_LEAN_HEAL):
            return await execute_local(name, arg, **options)
        return await workflow.execute_activity(name, arg, **options)

    def _activity_options(self, attempts: int = 20) -> dict[str, Any]:
        """Ticket calls retry long (Jira outages); decisions about fixes give up fast and escalate."""
        return {
            "start_to_close_timeout": timedelta(seconds=self._policy.activity_timeout_seconds),
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(seconds=1),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=60),
                maximum_attempts=attempts,
                non_retryable_error_types=["TrackerRejected", "RemediationRejected"],
            ),
        }
