"""The loop's own metrics: closed incidents recorded in the store, aggregated at scrape time.

The collector is exercised on SQLite and on a real PostgreSQL (the multi-replica setup), on a
database created by an older selfheal (columns added on open), and through the API's /metrics.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from connectors.incident_store import IncidentStore, default_url, fix_times
from devstack.temporal_server import free_port
from models.agent import AgentRunRecord
from models.incident import (
    Outcome,
)
from models.investigation import AgentRun
from selfheal.loop_metrics import LoopCollector
from selfheal.settings import load_settings
from tests.support import services
from tests.support.app import ApiServer, Stack
from tests.support.loop_metrics import T0, Samples, events, make_view, parse, scrape_api, value
from tests.support.payloads import simple, unique_group

CATEGORIES = {"pool-raise": "capacity", "revert-config": "bad-deploy", "cert-renew": "certificates"}


def record_all(store: IncidentStore) -> None:
    """Seven closed incidents covering every outcome label."""
    views = [
        make_view(
            "auto",
            Outcome.HEALED,
            playbook="pool-raise",
            runs=["healed"],
            timeline=events(
                (60, "remediation_started"),
                (70, "deploying"),
                (100, "verifying"),
                (160, "remediation_healed"),
            ),
            investigation_seconds=2.0,
        ),
        make_view(
            "approved-fix",
            Outcome.HEALED_AFTER_APPROVAL,
            playbook="pool-raise",
            runs=["rolled_back", "healed"],
            timeline=events(
                (30, "remediation_started"),
                (60, "verifying"),
                (90, "remediation_rolled_back"),
                (600, "remediation_started"),
                (700, "verifying"),
                (1000, "remediation_healed"),
            ),
        ),
        make_view(
            "rolled",
            Outcome.REJECTED,
            playbook="revert-config",
            runs=["rolled_back"],
            timeline=events((30, "remediation_started"), (50, "verifying"), (80, "remediation_rolled_back")),
        ),
        make_view("novel-rejected", Outcome.REJECTED, investigation_seconds=0.5),
        make_view("novel-resolved", Outcome.RESOLVED),
        make_view("suggested", Outcome.APPROVED, playbook="cert-renew"),
        make_view("blocked", Outcome.RESOLVED, playbook="pool-raise", runs=["blocked"]),
    ]
    for v in views:
        store.record(v, category=CATEGORIES.get(v.proposal.playbook if v.proposal else "", ""))


def scrape(url: str) -> Samples:
    collector = LoopCollector(url)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        return parse(generate_latest(registry).decode())
    finally:
        collector.close()


def check_aggregates(s: Samples) -> None:
    assert value(s, "selfheal_incident_store_up") == 1.0
    incidents = {
        (dict(k[1])["outcome"], dict(k[1])["category"]): v
        for k, v in s.items()
        if k[0] == "selfheal_incidents_total"
    }
    assert incidents == {
        ("auto_healed", "capacity"): 1.0,
        ("healed_after_approval", "capacity"): 1.0,
        ("rolled_back", "bad-deploy"): 1.0,
        ("rejected", "novel"): 1.0,
        ("self_resolved", "novel"): 1.0,
        ("escalated", "certificates"): 1.0,
        ("self_resolved", "capacity"): 1.0,
    }
    runs = {
        (dict(k[1])["playbook"], dict(k[1])["result"]): v
        for k, v in s.items()
        if k[0] == "selfheal_playbook_runs_total"
    }
    assert runs == {
        ("pool-raise", "healed"): 2.0,
        ("pool-raise", "rolled_back"): 1.0,
        ("pool-raise", "blocked"): 1.0,
        ("revert-config", "rolled_back"): 1.0,
    }
    # Fixes were attempted in three incidents (blocked is no attempt); two of them healed.
    assert value(s, "selfheal_self_healing_success_ratio") == pytest.approx(2 / 3)

    # Alert start is the earliest alert of the group (T0); the healing run's deploy ended at `verifying`.
    dep = "selfheal_alert_to_deployed_seconds"
    assert value(s, f"{dep}_count", category="capacity") == 2.0
    assert value(s, f"{dep}_sum", category="capacity") == pytest.approx(100 + 700)
    assert value(s, f"{dep}_bucket", category="capacity", le="60.0") == 0.0
    assert value(s, f"{dep}_bucket", category="capacity", le="120.0") == 1.0
    assert value(s, f"{dep}_bucket", category="capacity", le="600.0") == 1.0
    assert value(s, f"{dep}_bucket", category="capacity", le="900.0") == 2.0
    assert value(s, f"{dep}_bucket", category="capacity", le="+Inf") == 2.0
    ver = "selfheal_alert_to_verified_seconds"
    assert value(s, f"{ver}_sum", category="capacity") == pytest.approx(160 + 1000)
    assert value(s, f"{ver}_bucket", category="capacity", le="300.0") == 1.0
    assert value(s, f"{ver}_bucket", category="capacity", le="900.0") == 1.0
    assert value(s, f"{ver}_bucket", category="capacity", le="1800.0") == 2.0
    # Only healed incidents have these times: the rolled-back one is in neither histogram.
    assert value(s, f"{dep}_count", category="bad-deploy") is None

    inv = "selfheal_investigation_seconds"
    assert value(s, f"{inv}_count") == 2.0
    assert value(s, f"{inv}_sum") == pytest.approx(2.5)
    assert value(s, f"{inv}_bucket", le="0.5") == 1.0
    assert value(s, f"{inv}_bucket", le="1.0") == 1.0
    assert value(s, f"{inv}_bucket", le="2.5") == 2.0


def test_collector_aggregates_every_outcome_on_sqlite(tmp_path: Path) -> None:
    url = default_url(tmp_path / "data")
    store = IncidentStore(url)
    record_all(store)
    record_all(store)  # recording again (activity retry) changes nothing
    store.close()
    check_aggregates(scrape(url))


def test_rerecording_replaces_playbook_runs(tmp_path: Path) -> None:
    url = default_url(tmp_path / "data")
    store = IncidentStore(url)
    store.record(make_view("x", Outcome.REJECTED, playbook="pool-raise", runs=["failed", "failed"]))
    store.record(make_view("x", Outcome.REJECTED, playbook="pool-raise", runs=["failed"]))
    store.close()
    s = scrape(url)
    assert value(s, "selfheal_playbook_runs_total", playbook="pool-raise", result="failed") == 1.0
    # A playbook the caller could not categorise is `uncategorized`, never `novel`.
    assert value(s, "selfheal_incidents_total", outcome="rejected", category="uncategorized") == 1.0
    assert value(s, "selfheal_self_healing_success_ratio") == 0.0


def test_empty_store_exports_empty_families_and_no_ratio(tmp_path: Path) -> None:
    s = scrape(default_url(tmp_path / "data"))
    assert value(s, "selfheal_incident_store_up") == 1.0
    assert value(s, "selfheal_investigation_seconds_count") == 0.0
    assert value(s, "selfheal_self_healing_success_ratio") is None
    assert not [k for k in s if k[0] == "selfheal_incidents_total"]


def test_unreachable_store_reports_down_without_failing_the_scrape() -> None:
    s = scrape(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2")
    assert value(s, "selfheal_incident_store_up") == 0.0
    assert not [k for k in s if k[0].startswith("selfheal_incidents")]


def test_fix_times_without_verify_deploy_ends_at_healed() -> None:
    v = make_view(
        "nv",
        Outcome.HEALED,
        playbook="p",
        timeline=events((10, "remediation_started"), (20, "deploying"), (45, "remediation_healed")),
    )
    deployed, verified = fix_times(v)
    assert deployed == verified == T0 + timedelta(seconds=45)
    assert fix_times(make_view("none", Outcome.RESOLVED)) == (None, None)


OLD_SCHEMA = """
CREATE TABLE closed_incidents (
    id VARCHAR(200) NOT NULL PRIMARY KEY, title TEXT NOT NULL, service VARCHAR(200) NOT NULL,
    alertname VARCHAR(200) NOT NULL, severity VARCHAR(50) NOT NULL, labels TEXT NOT NULL,
    text TEXT NOT NULL, outcome VARCHAR(50) NOT NULL, fix TEXT NOT NULL, ticket_url TEXT NOT NULL,
    opened_at DATETIME NOT NULL, closed_at DATETIME
);
INSERT INTO closed_incidents VALUES ('old-1', 'old', 'cart', 'PoolExhausted', 'critical', '{}',
    'pool exhausted', 'rejected', 'alice: bumped pool', '', '2025-01-01 00:00:00', '2025-01-01 01:00:00');
"""


def test_old_sqlite_file_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "incidents.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
    url = f"sqlite:///{path}"
    store = IncidentStore(url)
    row = store.get("old-1")
    assert row is not None and row.fix == "alice: bumped pool" and row.category == ""
    store.record(make_view("new-1", Outcome.RESOLVED))
    found = store.similar(make_view("q", Outcome.RESOLVED), exclude_id="q")
    assert {f.incident_id for f in found} == {"old-1", "new-1"}
    store.close()
    IncidentStore(url).close()  # opening again finds nothing to add
    s = scrape(url)
    assert value(s, "selfheal_incidents_total", outcome="rejected", category="unknown") == 1.0
    assert value(s, "selfheal_incidents_total", outcome="self_resolved", category="novel") == 1.0


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    if services.postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries on this machine")
    with services.postgres_server() as url:
        yield url


def _reset(url: str) -> None:
    from sqlalchemy import create_engine, text

    from connectors.incident_store import engine_url

    engine = create_engine(engine_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS closed_incidents, playbook_runs"))
    engine.dispose()


def test_collector_aggregates_on_postgresql(postgres_url: str) -> None:
    _reset(postgres_url)
    store = IncidentStore(postgres_url)
    record_all(store)
    record_all(store)
    store.close()
    check_aggregates(scrape(postgres_url))


def test_old_postgresql_table_gains_the_new_columns(postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    from connectors.incident_store import engine_url

    _reset(postgres_url)
    engine = create_engine(engine_url(postgres_url))
    with engine.begin() as conn:
        for statement in OLD_SCHEMA.replace("DATETIME", "TIMESTAMP WITH TIME ZONE").split(";"):
            if statement.strip():
                conn.execute(text(statement))
    engine.dispose()
    store = IncidentStore(postgres_url)
    healed = make_view("new-1", Outcome.HEALED, playbook="pool-raise", runs=["healed"])
    store.record(healed, category="capacity")
    store.close()
    s = scrape(postgres_url)
    assert value(s, "selfheal_incidents_total", outcome="rejected", category="unknown") == 1.0
    assert value(s, "selfheal_incidents_total", outcome="auto_healed", category="capacity") == 1.0


@pytest.mark.settings(incident={"resolve_quiet_seconds": 0})
async def test_api_metrics_follow_incidents_to_their_outcome(stack: Stack) -> None:
    rejected = (await stack.post_alerts(simple(service="metrics-a"))).json()["incident_id"]
    await stack.wait_for(rejected, lambda v: v["stage"] == "awaiting_decision")
    s = await scrape_api(stack.http)
    assert (value(s, "selfheal_open_incidents", stage="awaiting_decision") or 0) >= 1
    assert value(s, "selfheal_incident_store_up") == 1.0
    assert not [k for k in s if k[0] == "selfheal_incidents_total"], "nothing closed yet"

    resp = await stack.http.post(
        f"/api/v1/incidents/{rejected}/decision", json={"decision": "reject", "by": "oncall"}
    )
    assert resp.status_code == 200, resp.text
    await stack.wait_for(rejected, lambda v: v["stage"] == "closed")

    group = unique_group()
    resolved = (await stack.post_alerts(simple(group=group, service="metrics-b"))).json()["incident_id"]
    await stack.wait_for(resolved, lambda v: v["stage"] == "awaiting_decision")
    await stack.post_alerts(simple("resolved", group=group, service="metrics-b"))
    view = await stack.wait_for(resolved, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "resolved"
    investigated = [(await stack.incident(i))["investigation"] for i in (rejected, resolved)]
    durations = [inv["duration_seconds"] for inv in investigated if inv is not None]

    s = await scrape_api(stack.http)
    assert value(s, "selfheal_incidents_total", outcome="rejected", category="novel") == 1.0
    assert value(s, "selfheal_incidents_total", outcome="self_resolved", category="novel") == 1.0
    # Each incident the investigator finished counts once, with its duration.
    assert value(s, "selfheal_investigation_seconds_count") == float(len(durations))
    assert value(s, "selfheal_investigation_seconds_sum") == pytest.approx(sum(durations))
    assert value(s, "selfheal_self_healing_success_ratio") is None, "no fix was attempted"
    # The process metrics are still there beside the loop's.
    assert (value(s, "selfheal_webhook_notifications_total", result="accepted") or 0) >= 2


async def test_api_metrics_answer_while_temporal_is_down(tmp_path: Path) -> None:
    """No open-incident gauge without Temporal, but the scrape still succeeds with the store's figures."""
    settings = load_settings(
        None,
        env="dev",
        data_dir=str(tmp_path / "data"),
        webhook_token="t",
        temporal={"address": f"127.0.0.1:{free_port()}", "rpc_timeout_seconds": 1},
    )
    store = IncidentStore(settings.store_url)
    store.record(make_view("down-1", Outcome.RESOLVED))
    store.close()

    def run() -> Samples:
        with ApiServer(settings) as api, httpx.Client(base_url=api.url, timeout=30) as client:
            resp = client.get("/metrics")
            assert resp.status_code == 200
            return parse(resp.text)

    s = await asyncio.to_thread(run)
    assert value(s, "selfheal_incidents_total", outcome="self_resolved", category="novel") == 1.0
    assert not [k for k in s if k[0] == "selfheal_open_incidents"]


def test_llm_runs_totalled_by_agent_model_and_outcome(tmp_path: Path) -> None:
    url = default_url(tmp_path / "data")
    store = IncidentStore(url)
    runs = [
        (
            "a",
            AgentRun(
                model="gpt",
                outcome="ok",
                requests=3,
                tool_calls={"git_log": 2},
                input_tokens=900,
                output_tokens=90,
                cost_usd=0.25,
            ),
        ),
        (
            "b",
            AgentRun(
                model="gpt",
                outcome="ok",
                requests=2,
                tool_calls={"read_evidence": 1},
                input_tokens=100,
                output_tokens=10,
                cost_usd=0.5,
            ),
        ),
        (
            "c",
            AgentRun(
                model="gpt",
                outcome="budget_exhausted",
                requests=12,
                tool_calls={"git_log": 12},
                input_tokens=5000,
                output_tokens=500,
                cost_usd=1.0,
                stopped_by="day_cost",
            ),
        ),
        ("d", AgentRun(model="local", outcome="ok", requests=1, input_tokens=50, output_tokens=5)),
    ]
    for run_id, run in runs:
        store.record_llm_run(AgentRunRecord(run_id=run_id, incident_id=f"inc-{run_id}", run=run))
    store.close()
    s = scrape(url)
    ok = {"agent": "investigator", "model": "gpt", "outcome": "ok"}
    assert value(s, "selfheal_llm_runs_total", **ok) == 2.0
    assert value(s, "selfheal_llm_tokens_total", **ok, direction="input") == 1000.0
    assert value(s, "selfheal_llm_tokens_total", **ok, direction="output") == 100.0
    assert value(s, "selfheal_llm_tool_calls_total", **ok) == 3.0
    assert value(s, "selfheal_llm_requests_total", **ok) == 5.0
    assert value(s, "selfheal_llm_cost_usd_total", **ok) == 0.75
    stopped = {**ok, "outcome": "budget_exhausted"}
    assert value(s, "selfheal_llm_runs_total", **stopped) == 1.0
    assert value(s, "selfheal_llm_cost_usd_total", **stopped) == 1.0
    local = {**ok, "model": "local"}
    assert value(s, "selfheal_llm_unpriced_runs_total", **local) == 1.0
    assert value(s, "selfheal_llm_cost_usd_total", **local) == 0.0, "unknown cost is counted apart"
    assert value(s, "selfheal_llm_unpriced_runs_total", **ok) == 0.0
