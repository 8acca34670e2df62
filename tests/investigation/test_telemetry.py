"""`LazyAgents`: a workflow's agent list that builds its durable agent only when pydantic-ai reads it."""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.models.test import TestModel

from investigation.telemetry import LazyAgents


def test_lazy_agents_build_the_agent_when_read_not_when_made() -> None:
    built: list[Agent[None, str]] = []

    def factory() -> Agent[None, str]:
        built.append(Agent(TestModel(), name="lazy"))
        return built[-1]

    agents = LazyAgents(factory)
    assert built == []  # a workflow class attribute: nothing is built at import
    assert len(agents) == 1
    assert built == []
    assert list(agents) == [built[0]]
    assert agents[0] is built[-1]
    assert agents[-1:] == [built[-1]]
