"""Metric graphs for the ticket: each series over the window around the alert, the alert start marked.

Rendering uses matplotlib's Agg canvas directly (no pyplot, no display, no global state), at a
fixed size, and writes PNGs without a timestamp or version, so the same data gives the same bytes.
`gather_metrics` runs range queries through `PrometheusClient.query_range` and never raises.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Protocol

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from connectors.prometheus import RangeSeries
from models.evidence import EvidenceSection, MetricSeries

WIDTH_PX = 800
HEIGHT_PX = 300
_DPI = 100
#: Series rendered per query at most; more make the section `truncated`.
MAX_SERIES_PER_QUERY = 5
#: Points per range query aimed at when no step is given.
_TARGET_POINTS = 240


class RangeQuerier(Protocol):
    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str | float
    ) -> list[RangeSeries]: ...


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def render_graph(series: MetricSeries, *, alert_start: datetime, title: str) -> bytes:
    """A PNG (800x300) of the series' points with a red dashed line at the alert start.

    The x axis is minutes relative to the alert start (its absolute time is in the axis label).
    """
    fig = Figure(figsize=(WIDTH_PX / _DPI, HEIGHT_PX / _DPI), dpi=_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    start = _aware(alert_start).astimezone(UTC)
    if series.points:
        xs = [(t - start.timestamp()) / 60.0 for t, _ in series.points]
        ys = [v for _, v in series.points]
        ax.plot(xs, ys, color="tab:blue", linewidth=1.2)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.axvline(0.0, color="tab:red", linestyle="--", linewidth=1.2, label="alert start")
    ax.set_title(title[:120], fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel(f"minutes from alert start ({start:%Y-%m-%d %H:%M:%S} UTC)", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


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
    query = "; ".join(f"{n}: {q}" for n, q in queries.items())[:2000]
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
