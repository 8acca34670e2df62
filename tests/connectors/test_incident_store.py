"""The closed-incident store: idempotent upsert, BM25 and label ranking, evidence section."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.incident_store import IncidentStore, LazyIncidentStore, bm25_scores, default_url, tokenize
from investigation.settings import EvidenceSettings
from investigation.sources.similar import SimilarIncidentsSource
from models.agent import AgentRunRecord, LlmSpend
from models.incident import (
    Decision,
    DecisionKind,
    IncidentView,
    Outcome,
    RemediationSummary,
    Stage,
    TicketRef,
    TimelineEvent,
    TrackedAlert,
)
from models.investigation import AgentRun

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def view(
    incident_id: str,
    *,
    alertname: str,
    service: str,
    severity: str = "critical",
    title: str = "",
    annotations: dict[str, str] | None = None,
    timeline: list[str] | None = None,
    extra_labels: dict[str, str] | None = None,
    closed: bool = True,
    **kwargs: object,
) -> IncidentView:
    labels = {"alertname": alertname, "service": service, "severity": severity, **(extra_labels or {})}
    return IncidentView(
        id=incident_id,
        group_id=f"g-{incident_id}",
        group_key=f"k-{incident_id}",
        receiver="selfheal",
        stage=Stage.CLOSED if closed else Stage.RECEIVED,
        status="resolved" if closed else "firing",
        outcome=Outcome.HEALED if closed else None,
        service=service,
        severity=severity,
        alertname=alertname,
        title=title or f"{alertname} on {service}",
        opened_at=T0,
        closed_at=T0 + timedelta(minutes=30) if closed else None,
        alerts=[
            TrackedAlert(
                fingerprint=f"fp-{incident_id}",
                status="resolved" if closed else "firing",
                labels=labels,
                annotations=annotations or {},
                startsAt=T0,
            )
        ],
        timeline=[TimelineEvent(at=T0, kind="note", message=m) for m in timeline or []],
        **kwargs,
    )


@pytest.fixture
def store(tmp_path: Path) -> IncidentStore:
    return IncidentStore(default_url(tmp_path / "data"))


def test_tokenize_lowercases_words() -> None:
    assert tokenize("Cart-Service 5xx: ERROR ratio > 0.2!") == [
        "cart",
        "service",
        "5xx",
        "error",
        "ratio",
        "0",
        "2",
    ]


def test_bm25_matches_a_hand_computed_corpus() -> None:
    docs = [["a", "b"], ["b", "c", "c"], ["d"]]
    scores = bm25_scores(["a", "c", "a"], docs)  # repeated query terms count once
    n, avgdl = 3, 2.0
    idf = math.log((n - 1 + 0.5) / (1 + 0.5) + 1)  # each of "a" and "c" is in one document
    norm1 = 1.5 * (1 - 0.75 + 0.75 * 2 / avgdl)
    norm2 = 1.5 * (1 - 0.75 + 0.75 * 3 / avgdl)
    assert scores[0] == pytest.approx(idf * 1 * 2.5 / (1 + norm1))
    assert scores[1] == pytest.approx(idf * 2 * 2.5 / (2 + norm2))
    assert scores[2] == 0.0
    # A term in every document weighs less than a rare one.
    common = bm25_scores(["b"], docs)
    assert 0 < common[0] < scores[0]
    assert bm25_scores(["a"], []) == []


def test_record_is_an_idempotent_upsert(store: IncidentStore) -> None:
    v = view(
        "inc-1",
        alertname="HighErrorRate",
        service="cart",
        ticket=TicketRef(key="OPS-1", url="http://tickets/OPS-1", tracker="sqlite"),
        remediations=[RemediationSummary(playbook="restart-cart", outcome="healed", fix_commit="abc123")],
    )
    store.record(v)
    store.record(v)
    assert store.count() == 1
    row = store.get("inc-1")
    assert row is not None
    assert row.fix == "restart-cart (abc123)"
    assert row.ticket_url == "http://tickets/OPS-1"
    assert row.outcome == "healed"
    store.record(v, fix="manual rollback")
    assert store.count() == 1
    row = store.get("inc-1")
    assert row is not None and row.fix == "manual rollback"


def test_fix_falls_back_to_the_human_comment(store: IncidentStore) -> None:
    v = view(
        "inc-h",
        alertname="DiskFull",
        service="db",
        decision=Decision(decision=DecisionKind.REJECT, by="alice", comment="cleaned /var/log by hand"),
    )
    store.record(v)
    row = store.get("inc-h")
    assert row is not None and row.fix == "alice: cleaned /var/log by hand"


def test_similar_ranks_same_alert_same_service_with_matching_text_first(store: IncidentStore) -> None:
    store.record(
        view(
            "match",
            alertname="HighErrorRate",
            service="cart",
            annotations={"summary": "checkout returns 500 errors after redis connection pool exhausted"},
            timeline=["restarted cart pods"],
        ),
        fix="restart-cart",
    )
    store.record(
        view(
            "same-alert-other-service",
            alertname="HighErrorRate",
            service="search",
            annotations={"summary": "search index unavailable"},
        )
    )
    store.record(
        view(
            "same-service-other-text",
            alertname="HighLatency",
            service="cart",
            severity="warning",
            annotations={"summary": "slow queries on the orders table"},
        )
    )
    store.record(
        view(
            "unrelated",
            alertname="DiskFull",
            service="backup",
            severity="warning",
            annotations={"summary": "disk almost full on backup host"},
        )
    )
    new = view(
        "new",
        alertname="HighErrorRate",
        service="cart",
        annotations={"summary": "cart checkout 500 errors, redis connection pool exhausted"},
        closed=False,
    )
    found = store.similar(new)
    ids = [s.incident_id for s in found]
    assert ids[0] == "match"
    assert found[0].fix == "restart-cart"
    assert found[0].outcome == "healed"
    assert found[0].closed_at == T0 + timedelta(minutes=30)
    assert ids.index("match") < ids.index("same-alert-other-service")
    assert "unrelated" not in ids or ids.index("unrelated") == len(ids) - 1
    assert all(a.score >= b.score for a, b in itertools.pairwise(found))
    assert len(store.similar(new, limit=2)) == 2


def test_similar_excludes_the_given_id(store: IncidentStore) -> None:
    v = view("inc-1", alertname="HighErrorRate", service="cart", annotations={"summary": "errors"})
    store.record(v)
    store.record(view("inc-2", alertname="HighErrorRate", service="cart", annotations={"summary": "errors"}))
    assert {s.incident_id for s in store.similar(v)} == {"inc-1", "inc-2"}
    assert [s.incident_id for s in store.similar(v, exclude_id="inc-1")] == ["inc-2"]


def test_other_labels_count(store: IncidentStore) -> None:
    store.record(view("a", alertname="X", service="s", extra_labels={"region": "eu", "team": "core"}))
    store.record(view("b", alertname="X", service="s", extra_labels={"region": "us", "team": "edge"}))
    found = store.similar(
        view("q", alertname="X", service="s", extra_labels={"region": "eu", "team": "core"})
    )
    assert [s.incident_id for s in found] == ["a", "b"]


def test_similar_incidents_source(store: IncidentStore, tmp_path: Path) -> None:
    source = SimilarIncidentsSource(EvidenceSettings(), lambda: store)
    v = view("inc-1", alertname="HighErrorRate", service="cart")
    assert source.gather(v).status == "empty"
    store.record(v)
    assert source.gather(v).status == "empty"  # itself is excluded
    store.record(view("inc-0", alertname="HighErrorRate", service="cart"), fix="restart")
    section = source.gather(v)
    assert section.source == "similar_incidents"
    assert section.status == "ok"
    assert [s.fix for s in section.similar] == ["restart"]
    assert SimilarIncidentsSource(EvidenceSettings(), None).gather(v).status == "skipped"
    store.engine.dispose()
    broken = IncidentStore(f"sqlite:///{tmp_path / 'broken.db'}")
    (tmp_path / "broken.db").write_bytes(b"not a database at all" * 100)
    broken.engine.dispose()
    failed = SimilarIncidentsSource(EvidenceSettings(), lambda: broken).gather(v)
    assert failed.status == "failed"
    assert failed.message.startswith("DatabaseError")


def test_lazy_store_opens_one_store_on_first_use(tmp_path: Path) -> None:
    lazy = LazyIncidentStore(default_url(tmp_path / "lazy"))
    assert not (tmp_path / "lazy").exists()
    first = lazy()
    assert lazy() is first and (tmp_path / "lazy" / "incidents.db").exists()
    first.close()


def test_survives_a_reopen(tmp_path: Path) -> None:
    url = default_url(tmp_path)
    first = IncidentStore(url)
    first.record(view("inc-1", alertname="A", service="s"))
    first.close()
    again = IncidentStore(url)
    assert again.count() == 1
    again.close()


def _llm_run(run_id: str, incident: str, at: datetime, cost: float | None) -> AgentRunRecord:
    run = AgentRun(model="m", outcome="ok", started_at=at, input_tokens=100, output_tokens=10, cost_usd=cost)
    return AgentRunRecord(run_id=run_id, incident_id=incident, run=run)


def test_llm_spend_by_incident_and_by_day(store: IncidentStore) -> None:
    midnight = T0.replace(hour=0)
    store.record_llm_run(_llm_run("r1", "inc-a", T0, 0.25))
    store.record_llm_run(_llm_run("r1", "inc-a", T0, 0.25))  # an activity retry: still one run
    store.record_llm_run(_llm_run("r2", "inc-a", midnight - timedelta(seconds=1), 1.0))  # yesterday
    store.record_llm_run(_llm_run("r3", "inc-b", T0, 0.5))
    store.record_llm_run(_llm_run("r4", "inc-b", T0, None))  # no price: unknown, adds nothing
    spend = store.llm_spend("inc-a", midnight)
    assert (spend.incident_cost, spend.day_cost, spend.day_runs) == (1.25, 0.75, 3)
    assert store.llm_spend("inc-c", midnight + timedelta(days=1)) == LlmSpend()
