"""The coding agent as a child workflow: the agent loop runs here, deterministically, while every
model request and every tool call (read, list, search, edit, write, run the tests) is an activity.

Steps: the worker's non-secret configuration; with a cost budget, what earlier runs cost; a fresh
worktree of the service's repository (or why none can be made); the agent's run; the draft (the
diff of what it wrote, tested on a clean checkout); the worktree removed, however the run ended;
the run's telemetry recorded (`agent="coding"`, with the files read before each edit). It never
raises for the model's sake: a budget, an unusable answer or a missing setting ends it with a
`CodingResult` saying why, which the incident puts on the ticket.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow

    from investigation.coding_agent import CodingAgents, coding_agent, coding_result, not_run, run_coding
    from models import ids
    from models.agent import AgentRunRecord, LlmSpend, LlmSpendRequest
    from models.coding import CodingDraft, CodingFinishRequest, CodingResult, CodingRunConfig, CodingWorkspace
    from models.investigation import AgentRun
    from models.remediation import CodingRequest
    from workflows.investigation_agent import day_start

_STORE_TIMEOUT = timedelta(seconds=30)
_STORE_RETRY = RetryPolicy(maximum_attempts=3)
_GIT_TIMEOUT = timedelta(minutes=5)
#: The draft's clean-checkout test run is bounded by the test commands' own timeouts.
_FINISH_TIMEOUT = timedelta(minutes=30)


@workflow.defn(name=ids.CODING_AGENT_WORKFLOW)
class CodingAgentWorkflow(PydanticAIWorkflow):
    __pydantic_ai_agents__ = CodingAgents()

    @workflow.run
    async def run(self, request: CodingRequest) -> CodingResult:
        config = await workflow.execute_activity(
            "coding_agent_config", result_type=CodingRunConfig, start_to_close_timeout=_STORE_TIMEOUT
        )
        if not config.enabled:
            return not_run(
                "The coding agent is disabled on this worker (investigation.coding_agent.enabled)."
            )
        spend: LlmSpend | None = None
        if config.has_cost_budget:
            try:
                spend = await workflow.execute_activity(
                    "llm_spend",
                    LlmSpendRequest(incident_id=request.incident_id, day_start=day_start(workflow.now())),
                    result_type=LlmSpend,
                    start_to_close_timeout=_STORE_TIMEOUT,
                    retry_policy=_STORE_RETRY,
                )
            except ActivityError as err:
                return not_run(
                    "The coding agent did not run: its cost budget could not be read from the incident"
                    f" store ({err.cause or err})."
                )
        try:
            workspace: CodingWorkspace = await workflow.execute_activity(
                "prepare_coding_workspace",
                request,
                result_type=CodingWorkspace,
                start_to_close_timeout=_GIT_TIMEOUT,
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
        except ActivityError as err:
            return not_run(f"The coding agent did not run: no workspace ({err.cause or err}).")
        if not workspace.worktree:
            return not_run(f"The coding agent did not run: {workspace.reason}.", repo=workspace.repo)

        info = workflow.info()
        run_id = f"{info.workflow_id}/{info.run_id}"

        async def record(run: AgentRun) -> None:
            try:
                await workflow.execute_activity(
                    "record_llm_run",
                    AgentRunRecord(run_id=run_id, incident_id=request.incident_id, run=run),
                    start_to_close_timeout=_STORE_TIMEOUT,
                    retry_policy=_STORE_RETRY,
                )
            except ActivityError as err:  # the draft matters more than its bookkeeping
                workflow.logger.warning("coding agent telemetry not recorded: %s", err.cause or err)

        finish = CodingFinishRequest(
            incident_id=request.incident_id,
            repo=workspace.repo,
            worktree=workspace.worktree,
            tests=workspace.tests,
        )
        try:
            attempt = await run_coding(
                coding_agent(), request, workspace, config, workflow.now, spend=spend, record=record
            )
            draft: CodingDraft | None = None
            if attempt.output is not None and attempt.edited:
                try:
                    draft = await workflow.execute_activity(
                        "finish_coding_workspace",
                        finish.model_copy(update={"paths": attempt.edited}),
                        result_type=CodingDraft,
                        start_to_close_timeout=_FINISH_TIMEOUT,
                        retry_policy=RetryPolicy(maximum_attempts=2),
                    )
                except ActivityError as err:
                    draft = CodingDraft(problem=f"the draft could not be collected ({err.cause or err})")
        finally:
            try:
                await workflow.execute_activity(
                    "cleanup_coding_workspace",
                    finish,
                    start_to_close_timeout=_GIT_TIMEOUT,
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            except ActivityError as err:
                workflow.logger.warning("coding worktree not removed: %s", err.cause or err)
        await record(attempt.run)
        return coding_result(attempt, draft, workspace.repo)
