"""The LLM investigator's one plain activity: its non-secret configuration, fetched by the workflow.

The live tools the model calls run as activities too, but pydantic-ai registers those from the
agent (`investigation/agent.py`, implemented in `investigation/live_tools.py`); this module only
holds what the workflow itself calls.
"""

from __future__ import annotations

from collections.abc import Callable

from temporalio import activity

from models.agent import LlmRunConfig


class AgentActivities:
    """The one plain activity the investigation workflow calls itself: its non-secret configuration."""

    def __init__(self, config: LlmRunConfig) -> None:
        self.config = config

    @activity.defn(name="llm_investigator_config")
    async def llm_investigator_config(self) -> LlmRunConfig:
        """Model name and budgets for this incident's run: recorded in history, so no secrets."""
        return self.config

    def all(self) -> list[Callable[..., object]]:
        return [self.llm_investigator_config]
