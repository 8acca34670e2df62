"""The loop's metrics read as Prometheus reads them, and closed-incident views to record in the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from models.incident import (
    IncidentView,
    Outcome,
    Proposal,
    RemediationSummary,
    Stage,
    TimelineEvent,
    TrackedAlert,
)
from models.investigation import Investigation

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (sample name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def events(*items: tuple[float, str]) -> list[TimelineEvent]:
    return [TimelineEvent(at=T0 + timedelta(seconds=s), kind=k, message=k) for s, k in items]


def make_view(
    incident_id: str,
    outcome: Outcome,
    *,
    playbook: str | None = None,
    runs: list[str] | None = None,
    timeline: list[TimelineEvent] | None = None,
    investigation_seconds: float | None = None,
) -> IncidentView:
    return IncidentView(
        id=incident_id,
        group_id=f"g-{incident_id}",
        group_key=f"k-{incident_id}",
        receiver="selfheal",
        stage=Stage.CLOSED,
        status="resolved",
        outcome=outcome,
        service="cart",
        alertname="PoolExhausted",
        opened_at=T0 + timedelta(seconds=5),
        closed_at=T0 + timedelta(hours=1),
        alerts=[
            TrackedAlert(
                fingerprint=f"fp-{incident_id}",
                status="firing",
                labels={"alertname": "PoolExhausted", "service": "cart"},
                annotations={},
                startsAt=T0,
            ),
            TrackedAlert(
                fingerprint=f"fp2-{incident_id}",
                status="firing",
                labels={"alertname": "PoolExhausted", "service": "cart", "instance": "b"},
                annotations={},
                startsAt=T0 + timedelta(seconds=40),
            ),
        ],
        proposal=Proposal(playbook=playbook, mode="auto", target="cart") if playbook else None,
        remediations=[
            RemediationSummary(playbook=playbook or "", outcome=r, seconds=10.0) for r in runs or []
        ],
        timeline=timeline or [],
        investigation=None
        if investigation_seconds is None
        else Investigation(investigator="builtin", summary="s", duration_seconds=investigation_seconds),
    )


async def scrape_api(http: Any) -> Samples:
    """GET /metrics over HTTP (no token: Prometheus scrapes it unauthenticated) and parse it."""
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=30) as plain:
        resp = await plain.get("/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return parse(resp.text)
