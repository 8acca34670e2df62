"""The LLM investigator's plain activities: its non-secret configuration, and its spend and
telemetry in the incident store (read before a run for the cost budgets, written after it).

The live tools the model calls run as activities too, but pydantic-ai registers those from the
agent (`investigation/agent.py`, implemented in `investigation/live_tools.py`); this module only
holds what the workflow itself calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import activity

from connectors.incident_store import IncidentStore
from models.agent import AgentRunRecord, LlmRunConfig, LlmSpend, LlmSpendRequest


class AgentActivities:
    """The plain activities the investigation workflow calls itself."""

    def __init__(self, config: LlmRunConfig, store: Callable[[], IncidentStore]) -> None:
        self.config = config
        self.store = store

    @activity.defn(name="llm_investigator_config")
    async def llm_investigator_config(self) -> LlmRunConfig:
        """Model name, price and budgets for this incident's run: recorded in history, so no secrets."""
        return self.config

    @activity.defn(name="llm_spend")
    async def llm_spend(self, request: LlmSpendRequest) -> LlmSpend:
        """What earlier LLM runs cost (this incident's, and today's): the cost budgets start from it."""
        return await asyncio.to_thread(lambda: self.store().llm_spend(request.incident_id, request.day_start))

    @activity.defn(name="record_llm_run")
    async def record_llm_run(self, record: AgentRunRecord) -> None:
        """Store one run's telemetry; a retry replaces the same row (keyed by the run id)."""
        await asyncio.to_thread(lambda: self.store().record_llm_run(record))

    def all(self) -> list[Callable[..., object]]:
        return [self.llm_investigator_config, self.llm_spend, self.record_llm_run]
