"""Global remediation switch: `selfheal pause` / `resume` and the API, via the control workflow."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from models.control import ControlState, PauseRequest
from models.ids import control_workflow_id
from selfheal.incidents import TemporalUnavailable, check_approver
from selfheal.settings import Settings
from workflows.control import ControlWorkflow


async def set_paused(client: Client, settings: Settings, req: PauseRequest) -> ControlState:
    """Pausing is open to any authenticated caller (it only makes selfheal ask humans);
    resuming autonomous fixes needs an approver."""
    if not req.paused:
        check_approver(settings, req.by)
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
