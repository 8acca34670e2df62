"""The LLM investigator as a child workflow: the agent loop runs here, deterministically, while
every model request and every live tool call is an activity (pydantic-ai's Temporal integration).

The workflow first asks its worker for the non-secret LLM configuration (model name, budgets):
URLs and API keys stay on the worker. It never raises for the model's sake: an exhausted budget
or an unusable answer returns the builtin investigation with the reason, so the incident keeps
going; the incident workflow falls back to the builtin one if this workflow fails anyway.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic_ai.durable_exec.temporal import PydanticAIWorkflow

    from investigation.agent import DurableAgents, investigation_agent, run_investigation
    from models import ids
    from models.agent import LlmRunConfig
    from models.investigation import Investigation
    from models.remediation import InvestigationRequest


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
        return await run_investigation(investigation_agent(), request, config, workflow.now)
