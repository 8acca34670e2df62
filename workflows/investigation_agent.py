"""The LLM investigator as a child workflow: the agent loop runs here, deterministically, while
every model request and every live tool call is an activity (pydantic-ai's Temporal integration).

The workflow first asks its worker for the non-secret LLM configuration (model name, budgets):
URLs and API keys stay on the worker. With a cost budget configured it then reads what earlier LLM
runs cost (this incident's, and today's across all incidents) from the incident store, and it
records this run's telemetry there when the run ends, however it ends. It never raises for the
model's sake: an exhausted budget or an unusable answer returns the builtin investigation with
the reason, so the incident keeps going; the incident workflow falls back to the builtin one if
this workflow fails anyway.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow

    from investigation.agent import (
        DurableAgents,
        fallback_before_run,
        investigation_agent,
        run_investigation,
        usage_limits,
    )
    from models import ids
    from models.agent import AgentRunRecord, LlmRunConfig, LlmSpend, LlmSpendRequest
    from models.investigation import AgentRun, Investigation
    from models.remediation import InvestigationRequest

#: Marks histories made since runs have budgets (tool calls, cost per incident and per day) and
#: record their telemetry: the spend read before the run and the record activity after it.
#: Histories without it ran with the request and token limits only, and record nothing.
PATCH_TELEMETRY = "llm-telemetry-v1"
_STORE_TIMEOUT = timedelta(seconds=30)
_STORE_RETRY = RetryPolicy(maximum_attempts=3)


def day_start(at: datetime) -> datetime:
    """UTC midnight of `at`: the per-day budget's day."""
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@workflow.defn(name=ids.INVESTIGATION_AGENT_WORKFLOW)
class InvestigationAgentWorkflow(PydanticAIWorkflow):
    __pydantic_ai_agents__ = DurableAgents()

    @workflow.run
    async def run(self, request: InvestigationRequest) -> Investigation:
        config = await workflow.execute_activity(
            "llm_investigator_config",
            result_type=LlmRunConfig,
            start_to_close_timeout=timedelta(seconds=30),
        )
        if not workflow.patched(PATCH_TELEMETRY):
            return await run_investigation(
                investigation_agent(), request, config, workflow.now, limits=usage_limits(config)
            )
        spend: LlmSpend | None = None
        if config.has_cost_budget:
            try:
                spend = await workflow.execute_activity(
                    "llm_spend",
                    LlmSpendRequest(incident_id=request.view.id, day_start=day_start(workflow.now())),
                    result_type=LlmSpend,
                    start_to_close_timeout=_STORE_TIMEOUT,
                    retry_policy=_STORE_RETRY,
                )
            except ActivityError as err:
                # A budget that cannot be read is not enforced by guessing: the run does not start.
                return fallback_before_run(
                    request,
                    config,
                    f"The LLM investigator did not run: its cost budget could not be read from the"
                    f" incident store ({err.cause or err}).",
                    workflow.now(),
                )
        info = workflow.info()
        run_id = f"{info.workflow_id}/{info.run_id}"

        async def record(run: AgentRun) -> None:
            try:
                await workflow.execute_activity(
                    "record_llm_run",
                    AgentRunRecord(run_id=run_id, incident_id=request.view.id, run=run),
                    start_to_close_timeout=_STORE_TIMEOUT,
                    retry_policy=_STORE_RETRY,
                )
            except ActivityError as err:  # the investigation matters more than its bookkeeping
                workflow.logger.warning("LLM run telemetry not recorded: %s", err.cause or err)

        return await run_investigation(
            investigation_agent(), request, config, workflow.now, spend=spend, record=record
        )
