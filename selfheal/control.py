"""Global remediation switch: `selfheal pause` / `resume` and the API, via the control workflow."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from models.control import ControlState, PauseRequest
from models.ids import control_workflow_id
from selfheal.audit import audit
from selfheal.auth import Principal
from selfheal.incidents import IncidentError, TemporalUnavailable, check_approver
from selfheal.settings import Settings
from workflows.control import ControlWorkflow


async def set_paused(
    client: Client, settings: Settings, req: PauseRequest, principal: Principal, *, origin: str = ""
) -> ControlState:
    """Pause or resume, credited to `principal` (`req.by` is overwritten with its name). Both need
    an approver: pausing changes what selfheal does for everyone. Audited whatever the outcome."""
    req = req.model_copy(update={"by": principal.name})
    action = "pause" if req.paused else "resume"
    try:
        check_approver(principal)
        state = await _set_paused(client, settings, req)
    except IncidentError as err:
        outcome = "refused" if err.status_code == 403 else "not_accepted"
        audit(action, principal, origin, outcome, status=err.status_code, reason=err.message)
        raise
    audit(action, principal, origin, "accepted", reason=req.reason)
    return state


async def _set_paused(client: Client, settings: Settings, req: PauseRequest) -> ControlState:
    op = WithStartWorkflowOperation(
        ControlWorkflow.run,
        None,
        id=control_workflow_id(settings.temporal.task_queue),
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    try:
        state: ControlState = await client.execute_update_with_start_workflow(
            ControlWorkflow.set_paused,
            req,
            start_workflow_operation=op,
            rpc_timeout=timedelta(seconds=max(30.0, settings.temporal.rpc_timeout_seconds)),
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise TemporalUnavailable(
                f"the control workflow did not answer (is a worker running?): {err}"
            ) from err
        raise
    return state


async def get_state(client: Client, settings: Settings) -> ControlState:
    handle = client.get_workflow_handle_for(
        ControlWorkflow.run, control_workflow_id(settings.temporal.task_queue)
    )
    try:
        state: ControlState = await handle.query(
            ControlWorkflow.state, rpc_timeout=timedelta(seconds=settings.temporal.rpc_timeout_seconds)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return ControlState()
        if err.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise TemporalUnavailable(
                f"the control workflow did not answer (is a worker running?): {err}"
            ) from err
        raise
    return state
