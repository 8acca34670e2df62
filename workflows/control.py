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

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
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
        RunTicket,
    )


#: Requests decided per workflow task at most, so one batch's history events stay small.
MAX_BATCH = 500


@workflow.defn
class ControlWorkflow:
    @workflow.init
    def __init__(self, state: ControlState | None) -> None:
        self._state = state or ControlState()
        self._queue: list[RunTicket] = []

    @workflow.run
    async def run(self, state: ControlState | None) -> None:
        while True:
            await workflow.wait_condition(
                lambda: bool(self._queue) or workflow.info().is_continue_as_new_suggested()
            )
            if self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                await self._deliver(
                    [GrantDelivery(task_token=t.task_token, grant=self._decide(t.request)) for t in batch]
                )
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

    @workflow.update
    def acquire(self, req: RunRequest) -> RunGrant:
        """The previous workers' way to ask (one update per request); same decision."""
        return self._decide(req)

    def _decide(self, req: RunRequest) -> RunGrant:
        """Grant one run of a playbook on a target, or say why not (paused, breaker, cooldown)."""
        now = workflow.now()
        runs = [
            r
            for r in self._state.runs.get(req.playbook, [])
            if now - r.at < timedelta(seconds=max(req.window_seconds, req.cooldown_seconds))
        ]
        self._state.runs[req.playbook] = runs
        if any(r.incident_id == req.incident_id for r in runs):
            return RunGrant(allowed=True, reason="already granted to this incident")
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
        runs.append(RunRecord(at=now, target=req.target, incident_id=req.incident_id))
        return RunGrant(allowed=True)
