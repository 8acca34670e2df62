"""`selfheal playbooks draft ID` reads the draft made as the incident closed from the incident store
(one line and exit 2 for an unknown or non-healed incident), and `/metrics` counts escalations by
outcome and drafts proposed and accepted."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from typer.testing import CliRunner, Result

from connectors.incident_store import IncidentStore
from models.incident import IncidentView, Outcome, RemediationSummary
from selfheal.loop_metrics import LoopCollector
from selfheal.playbooks_cli import playbooks_app
from tests.support.loop_metrics import T0, Samples, events, make_view, parse, value

DRAFT = "# drafted\napiVersion: selfheal/v1\nkind: Playbook\nname: cart-pool-exhausted-revert\n"


@pytest.fixture
def store_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    for key in list(os.environ):
        if key.startswith("SELFHEAL_"):
            monkeypatch.delenv(key)
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    config = tmp_path / "selfheal.yaml"
    config.write_text(f"evidence:\n  store_url: {url}\n")
    monkeypatch.setenv("SELFHEAL_CONFIG", str(config))
    yield url


def healed(incident_id: str) -> IncidentView:
    view = make_view(
        incident_id,
        Outcome.HEALED_AFTER_APPROVAL,
        playbook="proposed-revert",
        timeline=events((10, "escalated"), (60, "remediation_healed")),
    )
    view.remediations = [
        RemediationSummary(playbook="proposed-revert", outcome="healed", approved_by="alice")
    ]
    return view


def run(*args: str) -> Result:
    return CliRunner().invoke(playbooks_app, list(args))


def test_draft_prints_the_recorded_draft(store_url: str, tmp_path: Path) -> None:
    store = IncidentStore(store_url)
    store.record(healed("inc-1"))
    store.record_draft(
        "inc-1",
        name="cart-pool-exhausted-revert",
        status="proposed",
        yaml=DRAFT,
        branch="selfheal/draft-inc-1",
        now=T0,
    )
    store.close()
    result = run("draft", "inc-1")
    assert result.exit_code == 0, result.output
    assert result.stdout == DRAFT
    out = tmp_path / "out.yaml"
    result = run("draft", "inc-1", "-o", str(out))
    assert result.exit_code == 0 and out.read_text() == DRAFT
    assert "proposed as branch selfheal/draft-inc-1" in result.stdout


def test_draft_of_an_unknown_or_unhealed_incident_exits_2_with_one_line(store_url: str) -> None:
    store = IncidentStore(store_url)
    store.record(make_view("rejected-1", Outcome.REJECTED, timeline=events((10, "escalated"))))
    store.record(make_view("auto-1", Outcome.HEALED, playbook="pool-raise", runs=["healed"]))
    store.record(healed("refused-1"))
    store.record_draft("refused-1", status="refused", reasons=["the draft does not lint: x"], now=T0)
    store.close()
    for incident, words in (
        ("nope-1", "unknown incident 'nope-1'"),
        ("rejected-1", "was not healed by an approved proposed fix (outcome rejected"),
        ("auto-1", "was not healed by an approved proposed fix (outcome healed, playbook pool-raise)"),
    ):
        result = run("draft", incident)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.stderr
        assert result.stdout == ""
    result = run("draft", "refused-1")
    assert result.exit_code == 1 and "no playbook drafted: the draft does not lint: x" in result.stderr


def scrape(url: str) -> Samples:
    collector = LoopCollector(url)
    registry = CollectorRegistry()
    registry.register(collector)
    try:
        return parse(generate_latest(registry).decode())
    finally:
        collector.close()


def test_metrics_count_escalations_by_outcome_and_drafts_proposed_and_accepted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    store = IncidentStore(url)
    store.record(healed("first"))
    store.record_draft(
        "first", name="cart-pool-revert", status="proposed", yaml=DRAFT, now=T0 + timedelta(hours=1)
    )
    store.record(healed("other"))
    store.record_draft("other", status="refused", reasons=["no defaults"], now=T0)
    store.record(make_view("rejected", Outcome.REJECTED, timeline=events((5, "escalated"))))
    store.record(make_view("auto", Outcome.HEALED, playbook="pool-raise", runs=["healed"]))
    s = scrape(url)
    assert value(s, "selfheal_escalations_total", outcome="healed_after_approval") == 2.0
    assert value(s, "selfheal_escalations_total", outcome="rejected") == 1.0
    assert value(s, "selfheal_escalations_total", outcome="healed") is None  # never escalated
    assert value(s, "selfheal_playbook_drafts_total", status="proposed") == 1.0
    assert value(s, "selfheal_playbook_drafts_total", status="refused") == 1.0
    assert value(s, "selfheal_playbook_drafts_accepted_total") == 0.0

    # An incident that opened before the draft existed does not count; a later one that matched it does.
    early = make_view("early", Outcome.APPROVED, playbook="cart-pool-revert")
    store.record(early)
    assert value(scrape(url), "selfheal_playbook_drafts_accepted_total") == 0.0
    later = make_view("later", Outcome.HEALED_AFTER_APPROVAL, playbook="cart-pool-revert", runs=["healed"])
    store.record(later.model_copy(update={"opened_at": T0 + timedelta(hours=2)}))
    again = make_view("again", Outcome.APPROVED, playbook="cart-pool-revert")
    store.record(again.model_copy(update={"opened_at": T0 + timedelta(hours=3)}))
    store.close()
    assert value(scrape(url), "selfheal_playbook_drafts_accepted_total") == 1.0  # distinct drafts
