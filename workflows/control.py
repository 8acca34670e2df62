"""ControlWorkflow: the one durable place that decides whether an autonomous fix may run.

A singleton workflow per task queue (`selfheal-control-<task queue>`) holds the global pause
switch and each playbook's recent runs, so the circuit breaker and cooldown hold across
incidents, workers and restarts without a database.

Requests arrive as signals (signal-with-start, so it exists as soon as it is needed) carrying
the asking activity's task token; the workflow decides every queued request in one workflow
task and hands the batch to one `deliver_grants` activity, which completes each waiting
activity. A burst of hundreds of incidents therefore costs a few workflow tasks, where one
update per incident ran into Temporal's in-flight update limit (10) and aborted at every
continue-as-new. The `acquire` update stays for workers of the previous version.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.control import (
        ControlState,
        GrantBatch,
        GrantDelivery,
        PauseRequest,
        RunGrant,
        RunRecord,
        RunRequest,
        RunSlot,
        RunTicket,
    )


#: Requests decided per workflow task at most, so one batch's history events stay small.
MAX_BATCH = 500
#: Sorts after every real opening time: requests from workers that do not send one wait last.
_NEVER = datetime.max.replace(tzinfo=UTC)


@workflow.defn
class ControlWorkflow:
    @workflow.init
    def __init__(self, state: ControlState | None) -> None:
        self._state = state or ControlState()
        self._queue: list[RunTicket] = []

    @workflow.run
    async def run(self, state: ControlState | None) -> None:
        while True:
            try:
                await workflow.wait_condition(
                    lambda: (
                        bool(self._queue)
                        or self._can_admit()
                        or workflow.info().is_continue_as_new_suggested()
                    ),
                    timeout=self._next_expiry(),
                )
            except TimeoutError:
                pass  # a lease ran out: its slot is free (below)
            self._expire_leases()
            if self._queue or self._can_admit():
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                deliveries = [d for d in (self._arrive(t) for t in batch) if d is not None]
                deliveries += self._admit()
                if deliveries:
                    await self._deliver(deliveries)
                continue
            if not workflow.info().is_continue_as_new_suggested():
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            if not self._queue:
                workflow.continue_as_new(self._state)

    async def _deliver(self, deliveries: list[GrantDelivery]) -> None:
        """Complete the waiting activities. Past the activity's own three tries the batch is given
        up: each asking activity times out and asks again, and a run already granted is granted again."""
        try:
            await workflow.execute_activity(
                "deliver_grants",
                GrantBatch(deliveries=deliveries),
                # Ahead of other queued activities: every incident in line is waiting for it.
                priority=Priority(priority_key=1),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            workflow.logger.warning("could not deliver %d grants: %s", len(deliveries), err)

    @workflow.query
    def state(self) -> ControlState:
        return self._state

    @workflow.update
    def set_paused(self, req: PauseRequest) -> ControlState:
        self._state.paused = req.paused
        self._state.paused_by = req.by
        self._state.paused_reason = req.reason
        self._state.changed_at = workflow.now()
        return self._state

    @workflow.signal
    def request_run(self, ticket: RunTicket) -> None:
        self._queue.append(ticket)

    @workflow.signal
    def release_run(self, incident_id: str) -> None:
        """The incident's run is over (whatever its outcome): its slot goes to the next in line."""
        self._state.running = [s for s in self._state.running if s.incident_id != incident_id]

    # --- bounded admission: at most `max_concurrent` runs at once, oldest incident first ------------

    def _arrive(self, ticket: RunTicket) -> GrantDelivery | None:
        """Answer a request now, or queue it for a slot (None). Refusals never wait for a slot."""
        req = ticket.request
        if req.max_concurrent <= 0:
            grant = RunGrant(allowed=True) if req.turn else self._decide(req)
            return GrantDelivery(task_token=ticket.task_token, grant=grant)
        if any(s.incident_id == req.incident_id for s in self._state.running):
            grant = RunGrant(allowed=True, slot=True, reason="already granted to this incident")
            return GrantDelivery(task_token=ticket.task_token, grant=grant)
        for i, waiting in enumerate(self._state.waiting):
            if waiting.request.incident_id == req.incident_id:
                # Asked again (its activity timed out and retried): answer the new attempt, same place.
                self._state.waiting[i] = ticket
                return None
        refused = self._refusal(req, workflow.now())
        if refused is not None:
            return GrantDelivery(task_token=ticket.task_token, grant=refused)
        self._state.waiting.append(ticket)
        return None

    def _next_in_line(self) -> RunTicket | None:
        """Approved runs first (a human is waiting), then the incident that opened first."""
        if not self._state.waiting:
            return None
        return min(self._state.waiting, key=admission_key)

    def _can_admit(self) -> bool:
        head = self._next_in_line()
        return head is not None and len(self._state.running) < head.request.max_concurrent

    def _admit(self) -> list[GrantDelivery]:
        out: list[GrantDelivery] = []
        while self._can_admit():
            head = self._next_in_line()
            assert head is not None
            self._state.waiting.remove(head)
            # A turn is only the bound; a run is decided now (paused or tripped meanwhile: refused).
            grant = RunGrant(allowed=True) if head.request.turn else self._decide(head.request)
            if grant.allowed:
                until = workflow.now() + timedelta(seconds=head.request.lease_seconds)
                self._state.running.append(RunSlot(incident_id=head.request.incident_id, until=until))
                grant.slot = True
            out.append(GrantDelivery(task_token=head.task_token, grant=grant))
        return out

    def _next_expiry(self) -> timedelta | None:
        """Wake up when the first lease runs out, but only if someone waits for its slot."""
        if not self._state.waiting or not self._state.running:
            return None
        first = min(s.until for s in self._state.running)
        return max(first - workflow.now(), timedelta(seconds=1))

    def _expire_leases(self) -> None:
        now = workflow.now()
        self._state.running = [s for s in self._state.running if s.until > now]

    @workflow.update
    def acquire(self, req: RunRequest) -> RunGrant:
        """The previous workers' way to ask (one update per request); same decision."""
        return self._decide(req)

    def _decide(self, req: RunRequest) -> RunGrant:
        """Grant one run of a playbook on a target, or say why not (paused, breaker, cooldown)."""
        now = workflow.now()
        runs = self._recent_runs(req, now)
        self._state.runs[req.playbook] = runs
        if any(r.incident_id == req.incident_id for r in runs):
            return RunGrant(allowed=True, reason="already granted to this incident")
        refused = self._refusal(req, now)
        if refused is not None:
            return refused
        runs.append(RunRecord(at=now, target=req.target, incident_id=req.incident_id))
        return RunGrant(allowed=True)

    def _recent_runs(self, req: RunRequest, now: datetime) -> list[RunRecord]:
        return [
            r
            for r in self._state.runs.get(req.playbook, [])
            if now - r.at < timedelta(seconds=max(req.window_seconds, req.cooldown_seconds))
        ]

    def _refusal(self, req: RunRequest, now: datetime) -> RunGrant | None:
        """Why this run may not start now (paused, circuit open, cooldown), or None; records nothing."""
        if req.turn:
            return None
        runs = self._recent_runs(req, now)
        if any(r.incident_id == req.incident_id for r in runs):
            return None
        if self._state.paused and not req.approved:
            who = f" by {self._state.paused_by}" if self._state.paused_by else ""
            why = f": {self._state.paused_reason}" if self._state.paused_reason else ""
            return RunGrant(allowed=False, reason=f"autonomous remediation is paused{who}{why}")
        in_window = [r for r in runs if now - r.at < timedelta(seconds=req.window_seconds)]
        if len(in_window) >= req.max_runs:
            return RunGrant(
                allowed=False,
                reason=f"circuit open: {req.playbook} ran {len(in_window)} times in the last"
                f" {req.window_seconds:.0f}s (max {req.max_runs})",
            )
        recent = [
            r for r in runs if r.target == req.target and now - r.at < timedelta(seconds=req.cooldown_seconds)
        ]
        if recent:
            ago = (now - recent[-1].at).total_seconds()
            left = req.cooldown_seconds - ago
            return RunGrant(
                allowed=False,
                reason=f"cooldown: {req.playbook} ran on {req.target} {ago:.0f}s ago ({left:.0f}s left)",
            )
        return None


def admission_key(ticket: RunTicket) -> tuple[bool, datetime]:
    """Waiting order: approved runs first, then by when the incident opened (ties: arrival order)."""
    req = ticket.request
    return (not req.approved, req.opened_at or _NEVER)
