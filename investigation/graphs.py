"""Metric graphs for the ticket: each series over the window around the alert, the alert start marked.

Rendering uses matplotlib's Agg canvas directly (no pyplot, no display, no global state), at a
fixed size, and writes PNGs without a timestamp or version, so the same data gives the same bytes.
The metrics evidence source (`investigation.sources.metrics`) queries the series and calls it.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from models.evidence import MetricSeries

WIDTH_PX = 800
HEIGHT_PX = 300
_DPI = 100


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
