"""Metrics evidence: the alert rule's own expression and the service's golden signals, graphed.

Each query is range-queried around the alert start and each series rendered as a PNG
(`investigation.graphs`); a query that fails is noted in the section while the others still
count, so one bad PromQL does not hide the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from connectors.prometheus import RangeSeries
from investigation.graphs import render_graph
from investigation.settings import EvidenceSettings
from investigation.sources.base import EvidenceSource, Subject
from models.evidence import EvidenceSection, MetricSeries

#: Series rendered per query at most; more make the section `truncated`.
MAX_SERIES_PER_QUERY = 5
#: Points per range query aimed at when no step is given.
_TARGET_POINTS = 240
#: Alerts of the incident whose rule expression is graphed, at most.
_MAX_ALERTS = 3


class RangeQuerier(Protocol):
    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str | float
    ) -> list[RangeSeries]: ...


def alert_expression(generator_url: str) -> str | None:
    """The alert rule's PromQL, from Prometheus' generatorURL (`…/graph?g0.expr=…`)."""
    try:
        values = parse_qs(urlsplit(generator_url).query).get("g0.expr")
    except ValueError:
        return None
    return values[0] if values else None


class MetricsSource(EvidenceSource):
    """Graphs of the alert expressions and golden signals; skipped without a Prometheus."""

    kind = "metrics"

    def __init__(self, evidence: EvidenceSettings, prometheus: RangeQuerier | None) -> None:
        super().__init__(evidence)
        self.prometheus = prometheus

    def queries(self, subject: Subject) -> dict[str, str]:
        queries: dict[str, str] = {}
        for alert in subject.view.alerts[:_MAX_ALERTS]:
            expr = alert_expression(alert.generatorURL)
            if expr:
                queries[f"alert expression ({alert.labels.get('alertname', '')})"] = expr
        for name, query in subject.queries.golden_signals.items():
            queries[name] = query.replace("{service}", subject.service)
        return queries

    def query(self, subject: Subject) -> str:
        return _query_text(self.queries(subject))

    def _gather(self, subject: Subject) -> EvidenceSection:
        queries = self.queries(subject)
        if self.prometheus is None:
            return self.skipped("no Prometheus configured")
        return gather_metrics(
            self.prometheus,
            queries,
            alert_start=subject.alert_start,
            before_seconds=self.evidence.graph_window_seconds,
            min_step=self.evidence.graph_min_step_seconds,
        )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _query_text(queries: dict[str, str]) -> str:
    return "; ".join(f"{n}: {q}" for n, q in queries.items())[:2000]


def _series_name(name: str, labels: dict[str, str], many: bool) -> str:
    if not many or not labels:
        return name
    shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{shown}}}" if shown else name


def gather_metrics(
    client: RangeQuerier | None,
    queries: dict[str, str],
    *,
    alert_start: datetime,
    before_seconds: float = 3600.0,
    after_seconds: float = 600.0,
    step: float | None = None,
    min_step: float = 15.0,
    now: datetime | None = None,
) -> EvidenceSection:
    """Range-query each named PromQL around the alert start and graph each series; never raises.

    The window ends `after_seconds` after the start, or now if that is earlier. `step` defaults to
    about 240 points over the window, at least `min_step` seconds.
    """
    if client is None or not queries:
        return EvidenceSection(source="metrics", status="skipped", message="no Prometheus or no queries")
    start_at = _aware(alert_start).astimezone(UTC)
    end = start_at + timedelta(seconds=after_seconds)
    current = _aware(now).astimezone(UTC) if now is not None else datetime.now(UTC)
    end = max(min(end, current), start_at)
    begin = start_at - timedelta(seconds=before_seconds)
    span = (end - begin).total_seconds()
    step_s = step if step is not None else max(min_step, round(span / _TARGET_POINTS))
    metrics: list[MetricSeries] = []
    errors: list[str] = []
    truncated = False
    for name, promql in queries.items():
        try:
            result = client.query_range(promql, begin, end, step_s)
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
            continue
        if len(result) > MAX_SERIES_PER_QUERY:
            truncated = True
        many = len(result) > 1
        for item in result[:MAX_SERIES_PER_QUERY]:
            series = MetricSeries(
                name=_series_name(name, item.labels, many), query=promql, points=list(item.samples)
            )
            try:
                series.graph_png = render_graph(series, alert_start=start_at, title=series.name)
            except Exception as exc:
                errors.append(f"{series.name}: rendering failed: {type(exc).__name__}: {exc}"[:300])
            metrics.append(series)
    query = _query_text(queries)
    message = "; ".join(errors)
    if not metrics:
        status = "failed" if errors else "empty"
        return EvidenceSection(source="metrics", status=status, message=message or "no series", query=query)
    return EvidenceSection(
        source="metrics",
        status="truncated" if truncated else "ok",
        message=message,
        query=query,
        metrics=metrics,
    )
