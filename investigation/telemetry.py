"""What an LLM agent run costs, and the budgets that stop it before it costs too much.

A runaway agent loop (a model that keeps calling tools) is the most expensive failure an agent
can have, so every run carries a `RunBudget`: pydantic-ai's `UsageLimits` (checked by the agent
loop before each model request and before each batch of tool calls) extended with selfheal's
limits. Before each request it stops the run when the request budget is used up, or when the
spend so far plus an estimate of the next request would pass the per-run token budget, the
per-incident cost budget or the per-day cost budget (the latter two start from what earlier runs
recorded in the incident store). The next request is estimated from the previous one: its input
is the previous input plus what the model answered, and its output the previous output. A stop
raises `BudgetExceeded`, which says which budget in words a ticket can show.

Everything here is pure and deterministic: it runs in workflow code under Temporal. Cost is an
estimate from the price table in settings (`investigation.llm.prices`); a model without a price
has an unknown cost, never zero.

Both agents (the investigator, the coding agent) also take from here what their workflows share:
the model-request activity config and `LazyAgents`, their `__pydantic_ai_agents__` list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from pydantic_ai.agent import AbstractAgent
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart
from pydantic_ai.usage import RunUsage, UsageLimits
from temporalio.common import RetryPolicy
from temporalio.workflow import ActivityConfig

from models.agent import LlmPrice, LlmRunConfig, LlmSpend
from models.investigation import AgentRun, BudgetKind, RunOutcome

#: One model request as a Temporal activity, for both agents (the investigator, the coding agent):
#: minutes at most, retried a few times (a provider's 5xx), its usage counted once it answers.
MODEL_ACTIVITY = ActivityConfig(
    start_to_close_timeout=timedelta(minutes=5), retry_policy=RetryPolicy(maximum_attempts=3)
)

AgentT = TypeVar("AgentT", bound=AbstractAgent[Any, Any], covariant=True)


class LazyAgents(Sequence[AgentT]):
    """`[factory()]` for a workflow's `__pydantic_ai_agents__`, built only when read: pydantic-ai's
    plugin reads the list when the worker is configured, and a durable agent must not be built at
    import (nor in workflow code), so the workflow module names its agent's factory instead."""

    def __init__(self, factory: Callable[[], AgentT]) -> None:
        self._factory = factory

    @overload
    def __getitem__(self, index: int) -> AgentT: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[AgentT]: ...
    def __getitem__(self, index: int | slice) -> AgentT | Sequence[AgentT]:
        return [self._factory()][index]

    def __len__(self) -> int:
        return 1


class BudgetExceeded(UsageLimitExceeded):
    """A budget stopped the run; `kind` names it and `reason` says it for humans (pydantic-ai adds
    a hint for developers to the exception's message)."""

    def __init__(self, kind: BudgetKind, reason: str) -> None:
        super().__init__(reason)
        self.kind: BudgetKind = kind
        self.reason = reason


def usd(amount: float) -> str:
    """Dollars as a reader expects them: `$5.00`, `$0.25`, and small test budgets as `$0.0005`."""
    return f"${amount:,.2f}" if amount >= 0.1 or amount == 0 else f"${amount:.2g}"


def after_requests(requests: int) -> str:
    return "before any request" if requests == 0 else f"after {requests} request{'s' * (requests != 1)}"


def _reached(spent: float, next_estimate: float, limit: float) -> bool:
    """The budget is used up, or the next request would (by its estimate) pass it."""
    return spent >= limit or spent + next_estimate > limit


@dataclass(repr=False, kw_only=True)
class RunBudget(UsageLimits):
    """One run's limits: pydantic-ai's (requests, total tokens, tool calls) plus cost budgets.

    `incident_spent` and `day_spent` are what earlier runs cost, read when the run starts."""

    price: LlmPrice | None = None
    max_cost_per_incident: float | None = None
    max_cost_per_day: float | None = None
    incident_spent: float = 0.0
    day_spent: float = 0.0
    #: Tokens seen at the previous check, and the estimate of the next request (input, output).
    _seen: tuple[int, int] = field(default=(0, 0), init=False)
    _next: tuple[int, int] = field(default=(0, 0), init=False)

    def check_before_request(self, usage: RunUsage) -> None:
        requests = usage.requests
        if self.request_limit is not None and requests >= self.request_limit:
            raise BudgetExceeded(
                "requests",
                f"request budget of {self.request_limit} per run reached {after_requests(requests)}",
            )
        seen_in, seen_out = self._seen
        last_in, last_out = usage.input_tokens - seen_in, usage.output_tokens - seen_out
        if last_in or last_out:
            self._next = (last_in + last_out, last_out)
        self._seen = (usage.input_tokens, usage.output_tokens)
        next_in, next_out = self._next
        limit = self.total_tokens_limit
        if limit is not None and _reached(usage.total_tokens, next_in + next_out, limit):
            raise BudgetExceeded(
                "tokens",
                f"token budget of {limit:,} per run reached {after_requests(requests)}"
                f" ({usage.total_tokens:,} used, the next request would take about {next_in + next_out:,})",
            )
        if self.price is not None:
            spent = self.price.cost(usage.input_tokens, usage.output_tokens)
            estimate = self.price.cost(next_in, next_out)
            per_incident = self.max_cost_per_incident
            if per_incident is not None and _reached(self.incident_spent + spent, estimate, per_incident):
                raise BudgetExceeded(
                    "incident_cost",
                    f"per-incident budget of {usd(per_incident)} reached {after_requests(requests)}"
                    f" ({usd(self.incident_spent + spent)} spent on this incident)",
                )
            per_day = self.max_cost_per_day
            if per_day is not None and _reached(self.day_spent + spent, estimate, per_day):
                raise BudgetExceeded(
                    "day_cost",
                    f"per-day budget of {usd(per_day)} reached {after_requests(requests)}"
                    f" ({usd(self.day_spent + spent)} spent today, UTC)",
                )
        super().check_before_request(usage)

    def check_before_tool_call(self, projected_usage: RunUsage) -> None:
        limit = self.tool_calls_limit
        if limit is not None and projected_usage.tool_calls > limit:
            raise BudgetExceeded(
                "tool_calls",
                f"tool-call budget of {limit} per run reached {after_requests(projected_usage.requests)}",
            )


def run_budget(config: LlmRunConfig, spend: LlmSpend | None) -> RunBudget:
    """The limits of one run from the worker's configuration and the spend read when it started."""
    spend = spend or LlmSpend()
    return RunBudget(
        request_limit=config.max_requests,
        total_tokens_limit=config.max_total_tokens,
        tool_calls_limit=config.max_tool_calls,
        price=config.price,
        max_cost_per_incident=config.max_cost_per_incident,
        max_cost_per_day=config.max_cost_per_day,
        incident_spent=spend.incident_cost,
        day_spent=spend.day_cost,
    )


def tool_call_counts(messages: Iterable[ModelMessage], tools: Sequence[str]) -> dict[str, int]:
    """Tool calls that ran, by name, from a run's messages (returns of the agent's own tools only)."""
    names = set(tools)
    counts: Counter[str] = Counter()
    for message in messages:
        if isinstance(message, ModelRequest):
            for part in message.parts:
                if isinstance(part, ToolReturnPart) and part.tool_name in names:
                    counts[part.tool_name] += 1
    return dict(sorted(counts.items()))


def agent_run(
    *,
    model: str,
    outcome: RunOutcome,
    usage: RunUsage,
    messages: Iterable[ModelMessage],
    tools: Sequence[str],
    price: LlmPrice | None,
    started_at: datetime,
    wall_seconds: float,
    stopped_by: BudgetKind = "",
) -> AgentRun:
    """The telemetry record of an investigator run."""
    return AgentRun(
        agent="investigator",
        model=model,
        outcome=outcome,
        requests=usage.requests,
        tool_calls=tool_call_counts(messages, tools),
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=price.cost(usage.input_tokens, usage.output_tokens) if price is not None else None,
        started_at=started_at,
        wall_seconds=wall_seconds,
        stopped_by=stopped_by,
    )
