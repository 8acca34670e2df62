"""Metrics of the self-healing loop itself, computed at scrape time from durable data.

The API and the worker are separate processes and the API may run as several replicas, so these
are not in-process counters: every scrape aggregates the incident store (a few GROUP BY queries)
and counts open incidents in Temporal visibility. Every replica therefore reports the same
totals; aggregate across replicas with `max`, not `sum`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, distinct, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from temporalio.client import Client

from connectors.incident_store import (
    ATTEMPTED_RESULTS,
    ClosedIncident,
    IncidentStore,
    LazyIncidentStore,
    LlmRun,
    PlaybookDraft,
    PlaybookRun,
)
from models import ids
from models.incident import Outcome, Stage

log = structlog.get_logger(__name__)

#: Alert start → fix deployed / verified: from a minute to a day.
ALERT_BUCKETS: tuple[float, ...] = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
INVESTIGATION_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

#: The `outcome` label of `selfheal_incidents_total`, from the incident's `Outcome`.
OUTCOME_LABELS: dict[str, str] = {
    Outcome.HEALED.value: "auto_healed",
    Outcome.HEALED_AFTER_APPROVAL.value: "healed_after_approval",
    Outcome.APPROVED.value: "escalated",
    Outcome.REJECTED.value: "rejected",
    Outcome.RESOLVED.value: "self_resolved",
}
ROLLED_BACK = "rolled_back"
HEALED_OUTCOMES = (Outcome.HEALED.value, Outcome.HEALED_AFTER_APPROVAL.value)
#: Stages in which an incident is still open.
OPEN_STAGES = [s for s in Stage if s != Stage.CLOSED]


def outcome_label(outcome: str, rollbacks: int) -> str:
    """An incident whose fix was rolled back and that was not healed afterwards counts as rolled back."""
    if rollbacks > 0 and outcome not in HEALED_OUTCOMES:
        return ROLLED_BACK
    return OUTCOME_LABELS.get(outcome, outcome or "unknown")


def _histogram(
    session: Session,
    name: str,
    doc: str,
    column: InstrumentedAttribute[Any],
    buckets: Sequence[float],
    by: InstrumentedAttribute[Any] | None = None,
) -> HistogramMetricFamily:
    """Cumulative bucket counts and the sum in one aggregate query (grouped by `by` when given)."""
    sums: list[ColumnElement[Any]] = [func.sum(case((column <= b, 1), else_=0)) for b in buckets]
    keys = [by] if by is not None else []
    stmt = select(*keys, func.count(column), func.coalesce(func.sum(column), 0.0), *sums).where(
        column.is_not(None)
    )
    if by is not None:
        stmt = stmt.group_by(by)
    family = HistogramMetricFamily(name, doc, labels=["category"] if by is not None else [])
    for row in session.execute(stmt).all():
        values = list(row)
        labels = [str(values.pop(0) or "unknown")] if by is not None else []
        count, total, *cumulative = values
        if by is None and not count:
            cumulative = [0] * len(buckets)
        points = [(_le(b), float(c or 0)) for b, c in zip(buckets, cumulative, strict=True)]
        points.append(("+Inf", float(count or 0)))
        family.add_metric(labels, points, float(total or 0.0))
    return family


def _le(bound: float) -> str:
    return str(float(bound))


class LoopCollector(Collector):
    """Queries the incident store on every scrape; `selfheal_incident_store_up` says whether it could."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._open = LazyIncidentStore(store_url)

    def close(self) -> None:
        self._open.close()

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "selfheal_incident_store_up", "1 when the incident store answered this scrape's queries"
        )
        try:
            families = self._families(self._open())
        except Exception as err:  # a scrape must never fail because the database is down
            log.warning("incident store metrics unavailable", error=f"{type(err).__name__}: {err}"[:300])
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from families

    def _families(self, store: IncidentStore) -> list[Metric]:
        ci = ClosedIncident
        with Session(store.engine) as session:
            incidents = CounterMetricFamily(
                "selfheal_incidents",
                "Closed incidents by outcome (auto_healed, healed_after_approval, escalated, rejected, "
                "rolled_back, self_resolved) and playbook category (novel: no playbook matched)",
                labels=["outcome", "category"],
            )
            counts: dict[tuple[str, str], int] = {}
            rolled = case((ci.rollbacks > 0, 1), else_=0)
            stmt = select(ci.outcome, ci.category, rolled, func.count()).group_by(
                ci.outcome, ci.category, rolled
            )
            for outcome, category, rollbacks, n in session.execute(stmt).all():
                key = (outcome_label(outcome or "", int(rollbacks or 0)), category or "unknown")
                counts[key] = counts.get(key, 0) + int(n)
            for (outcome, category), n in sorted(counts.items()):
                incidents.add_metric([outcome, category], float(n))

            runs = CounterMetricFamily(
                "selfheal_playbook_runs",
                "Playbook runs of closed incidents by result (healed, rolled_back, failed, skipped, blocked)",
                labels=["playbook", "result"],
            )
            pr = PlaybookRun
            stmt2 = select(pr.playbook, pr.result, func.count()).group_by(pr.playbook, pr.result)
            for playbook, result, n in sorted(session.execute(stmt2).all()):
                runs.add_metric([playbook, result], float(n))

            attempted = session.scalar(
                select(func.count(distinct(pr.incident_id))).where(pr.result.in_(ATTEMPTED_RESULTS))
            )
            healed = session.scalar(select(func.count(distinct(pr.incident_id))).where(pr.result == "healed"))
            families: list[Metric] = [incidents, runs]
            if attempted:
                ratio = GaugeMetricFamily(
                    "selfheal_self_healing_success_ratio",
                    "Of the closed incidents where a fix was attempted, the share a fix healed",
                )
                ratio.add_metric([], float(healed or 0) / float(attempted))
                families.append(ratio)
            families.append(
                _histogram(
                    session,
                    "selfheal_alert_to_deployed_seconds",
                    "Healed incidents: from the alert's start to the healing fix deployed",
                    ci.alert_to_deployed_seconds,
                    ALERT_BUCKETS,
                    by=ci.category,
                )
            )
            families.append(
                _histogram(
                    session,
                    "selfheal_alert_to_verified_seconds",
                    "Healed incidents: from the alert's start to the fix verified",
                    ci.alert_to_verified_seconds,
                    ALERT_BUCKETS,
                    by=ci.category,
                )
            )
            families.append(
                _histogram(
                    session,
                    "selfheal_investigation_seconds",
                    "How long the investigation of closed incidents took",
                    ci.investigation_seconds,
                    INVESTIGATION_BUCKETS,
                )
            )
            families.extend(_llm_families(session))
            families.extend(_learning_families(session))
        return families


def _learning_families(session: Session) -> list[Metric]:
    """How the loop learns: escalated incidents by how they ended, and the playbooks drafted from
    approved fixes, proposed (or refused) and accepted (a later incident matched one)."""
    ci = ClosedIncident
    escalations = CounterMetricFamily(
        "selfheal_escalations",
        "Closed incidents that were escalated to humans, by outcome (healed_after_approval,"
        " approved, rejected, resolved, …)",
        labels=["outcome"],
    )
    stmt = select(ci.outcome, func.count()).where(ci.escalated == 1).group_by(ci.outcome)
    for outcome, n in sorted(session.execute(stmt).all(), key=lambda row: str(row[0])):
        escalations.add_metric([outcome or "unknown"], float(n))
    drafts = CounterMetricFamily(
        "selfheal_playbook_drafts",
        "Playbooks drafted from incidents an approved fix healed, by status (proposed: lints clean,"
        " attached and pushed when a playbooks repository is configured; refused: not proposed)",
        labels=["status"],
    )
    pd = PlaybookDraft
    counts = dict(session.execute(select(pd.status, func.count()).group_by(pd.status)).all())
    for status in ("proposed", "refused"):
        drafts.add_metric([status], float(counts.get(status, 0)))
    accepted = CounterMetricFamily(
        "selfheal_playbook_drafts_accepted",
        "Drafted playbooks a later incident matched (so an SRE merged them): distinct draft names",
    )
    later = (
        select(func.count(distinct(pd.name)))
        .join(ci, ci.playbook == pd.name)
        .where(pd.status == "proposed", ci.id != pd.incident_id, ci.opened_at >= pd.created_at)
    )
    accepted.add_metric([], float(session.scalar(later) or 0))
    return [escalations, drafts, accepted]


def _llm_families(session: Session) -> list[Metric]:
    """LLM agent runs (investigator, coding agent) by agent, model and outcome: runs, tokens, tool
    calls, and the estimated cost of the runs whose model has a price (the others are counted apart)."""
    labels = ["agent", "model", "outcome"]
    runs = CounterMetricFamily(
        "selfheal_llm_runs", "LLM agent runs by agent, model and outcome", labels=labels
    )
    tokens = CounterMetricFamily(
        "selfheal_llm_tokens",
        "Model tokens of LLM agent runs, input and output",
        labels=[*labels, "direction"],
    )
    calls = CounterMetricFamily("selfheal_llm_tool_calls", "Tool calls of LLM agent runs", labels=labels)
    requests = CounterMetricFamily("selfheal_llm_requests", "Model requests of LLM agent runs", labels=labels)
    cost = CounterMetricFamily(
        "selfheal_llm_cost_usd",
        "Estimated cost in USD of LLM agent runs, from investigation.llm.prices (priced runs only)",
        labels=labels,
    )
    unpriced = CounterMetricFamily(
        "selfheal_llm_unpriced_runs",
        "LLM agent runs whose model has no price, so their cost is unknown and not in selfheal_llm_cost_usd",
        labels=labels,
    )
    lr = LlmRun
    stmt = select(
        lr.agent,
        lr.model,
        lr.outcome,
        func.count(),
        func.coalesce(func.sum(lr.input_tokens), 0),
        func.coalesce(func.sum(lr.output_tokens), 0),
        func.coalesce(func.sum(lr.tool_calls), 0),
        func.coalesce(func.sum(lr.requests), 0),
        func.coalesce(func.sum(lr.cost_usd), 0.0),
        func.sum(case((lr.cost_usd.is_(None), 1), else_=0)),
    ).group_by(lr.agent, lr.model, lr.outcome)
    for agent, model, outcome, n, tin, tout, ncalls, nreq, usd, nunpriced in sorted(
        session.execute(stmt).all()
    ):
        key = [agent, model, outcome]
        runs.add_metric(key, float(n))
        tokens.add_metric([*key, "input"], float(tin))
        tokens.add_metric([*key, "output"], float(tout))
        calls.add_metric(key, float(ncalls))
        requests.add_metric(key, float(nreq))
        cost.add_metric(key, float(usd))
        unpriced.add_metric(key, float(nunpriced or 0))
    return [runs, tokens, requests, calls, cost, unpriced]


class OpenIncidentsCollector(Collector):
    """Open incidents by stage, refreshed by the /metrics handler (Temporal's client is async)."""

    def __init__(self) -> None:
        self.family: GaugeMetricFamily | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if self.family is not None:
            yield self.family

    async def refresh(self, client: Client, deadline_seconds: float = 2.0) -> None:
        """Count running incident workflows per stage in visibility; on failure the gauge is left out."""

        async def count(stage: Stage) -> int:
            query = (
                "WorkflowType = 'IncidentWorkflow' AND ExecutionStatus = 'Running' "
                f"AND {ids.SA_STAGE.name} = '{stage.value}'"
            )
            result = await client.count_workflows(query)
            return int(result.count)

        try:
            async with asyncio.timeout(deadline_seconds):
                counts = await asyncio.gather(*(count(s) for s in OPEN_STAGES))
        except Exception as err:
            log.warning("open incident count unavailable", error=f"{type(err).__name__}: {err}"[:300])
            self.family = None
            return
        family = GaugeMetricFamily(
            "selfheal_open_incidents", "Open incidents by stage (Temporal visibility)", labels=["stage"]
        )
        for stage, n in zip(OPEN_STAGES, counts, strict=True):
            family.add_metric([stage.value], float(n))
        self.family = family
