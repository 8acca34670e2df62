"""Metric graphs: PNG rendering and gathering range queries (fake client and a real Prometheus)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.prometheus import PrometheusClient, PrometheusError, RangeSeries
from demo.observability import prometheus_server
from investigation.graphs import HEIGHT_PX, WIDTH_PX, render_graph
from investigation.sources.metrics import MAX_SERIES_PER_QUERY, gather_metrics
from models.evidence import MetricSeries
from tests.support.metric_target import MetricTarget

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _points(n: int = 60) -> list[tuple[float, float]]:
    base = START.timestamp() - 1800
    return [(base + 60 * i, 0.01 if i < 30 else 0.3) for i in range(n)]


def _size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def test_render_graph_is_a_small_deterministic_png() -> None:
    series = MetricSeries(name="error_ratio", query="x", points=_points())
    png = render_graph(series, alert_start=START, title="error ratio")
    assert png.startswith(PNG_MAGIC)
    assert _size(png) == (WIDTH_PX, HEIGHT_PX)
    assert render_graph(series, alert_start=START, title="error ratio") == png
    moved = render_graph(series, alert_start=START + timedelta(minutes=10), title="error ratio")
    assert moved.startswith(PNG_MAGIC) and moved != png


def test_render_graph_without_points() -> None:
    png = render_graph(MetricSeries(name="empty", query="x"), alert_start=START, title="empty")
    assert png.startswith(PNG_MAGIC)


class FakeClient:
    def __init__(self, answers: dict[str, list[RangeSeries] | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, datetime, datetime, str | float]] = []

    def query_range(
        self, promql: str, start: datetime, end: datetime, step: str | float
    ) -> list[RangeSeries]:
        self.calls.append((promql, start, end, step))
        answer = self.answers[promql]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_gather_metrics_with_a_fake_client() -> None:
    one = RangeSeries(labels={"service": "cart"}, samples=_points())
    client = FakeClient(
        {
            "errors": [one],
            "latency": [RangeSeries(labels={"pod": f"p{i}"}, samples=_points(3)) for i in range(7)],
            "bad(": PrometheusError("bad PromQL", retryable=False),
        }
    )
    section = gather_metrics(
        client,
        {"errors": "errors", "latency": "latency", "broken": "bad("},
        alert_start=START,
        now=START + timedelta(hours=1),
    )
    assert section.source == "metrics"
    assert section.status == "truncated"
    assert "broken" in section.message and "bad PromQL" in section.message
    assert [m.name for m in section.metrics][:2] == ["errors", "latency{pod=p0}"]
    assert len(section.metrics) == 1 + MAX_SERIES_PER_QUERY
    assert section.metrics[0].points == one.samples
    assert all(m.graph_png and m.graph_png.startswith(PNG_MAGIC) for m in section.metrics)
    _, begin, end, step = client.calls[0]
    assert begin == START - timedelta(seconds=3600)
    assert end == START + timedelta(seconds=600)
    assert step == 18  # 4200 s / 240 points


def test_gather_metrics_window_ends_now_and_reports_failures() -> None:
    client = FakeClient({"q": []})
    section = gather_metrics(client, {"q": "q"}, alert_start=START, now=START + timedelta(seconds=60), step=5)
    assert section.status == "empty"
    assert client.calls[0][2] == START + timedelta(seconds=60)
    assert client.calls[0][3] == 5
    failing = FakeClient({"q": PrometheusError("connection refused", retryable=True)})
    failed = gather_metrics(failing, {"q": "q"}, alert_start=START)
    assert failed.status == "failed" and "connection refused" in failed.message
    assert gather_metrics(None, {"q": "q"}, alert_start=START).status == "skipped"
    assert gather_metrics(client, {}, alert_start=START).status == "skipped"


def test_gather_metrics_against_a_real_prometheus(tmp_path: Path) -> None:
    with MetricTarget() as target, prometheus_server(tmp_path / "prom", [target.address]) as url:
        target.set("demo_error_ratio", 0.25, service="cart")
        with PrometheusClient(url, timeout=5) as client:
            deadline = time.monotonic() + 30
            while client.query("demo_error_ratio") != [0.25]:
                assert time.monotonic() < deadline, "Prometheus never scraped the target"
                time.sleep(0.1)
            # Poll until the range (whose end rounds to whole seconds) holds samples: no fixed wait.
            while True:
                section = gather_metrics(
                    client,
                    {"error ratio": "demo_error_ratio", "broken": "sum("},
                    alert_start=datetime.now(UTC),
                    before_seconds=60,
                    step=1,
                )
                if section.metrics and section.metrics[0].points:
                    break
                assert time.monotonic() < deadline, f"no range samples: {section}"
                time.sleep(0.2)
    assert section.status == "ok", section
    assert "broken" in section.message
    [series] = section.metrics
    assert series.name == "error ratio"
    assert series.points and all(v == 0.25 for _, v in series.points)
    assert series.graph_png is not None and series.graph_png.startswith(PNG_MAGIC)
