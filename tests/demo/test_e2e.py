"""The demo, end to end: real Prometheus, Alertmanager, Temporal, selfheal (worker and API as
processes) and the demo shop under load, driven by the same scenario runner as `selfheal demo`.

One known fault (a bad config commit, healed with no human) and then the novel one (escalated
with evidence and an investigation; the earlier incident is found as a similar one; the proposed
revert is planned, approved by its digest and run by selfheal). Each is checked through the public
API, the config remote and the shop's deploy log: one incident, one ticket, exactly one fix commit
and one deploy.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from demo.scenarios import SCENARIOS, Runner, ScenarioResult
from demo.stack import DEMO_APPROVER, DemoStack

pytestmark = pytest.mark.timeout(240)


@dataclass
class Run:
    stack: DemoStack
    runner: Runner
    known: ScenarioResult
    novel: ScenarioResult
    escalated_view: dict[str, Any]
    events: list[tuple[str, str, float, str]]


@pytest.fixture(scope="module")
def run(temporal_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    stack = DemoStack(tmp_path_factory.mktemp("demo"), temporal_address=temporal_address)
    events: list[tuple[str, str, float, str]] = []
    current = {"scenario": ""}
    seen: dict[str, Any] = {}
    with stack:
        runner = Runner(stack, lambda s, k, t: events.append((current["scenario"], k, s, t)))

        def decide(view: dict[str, Any]) -> None:
            seen["view"] = view
            digest = (view.get("proposal") or {}).get("digest")
            runner.decide(view["id"], "approve", "run the proposed revert", plan_digest=digest)

        current["scenario"] = "bad-config"
        known = runner.run(SCENARIOS["bad-config"], decide)
        current["scenario"] = "novel"
        novel = runner.run(SCENARIOS["novel"], decide)
        yield Run(stack, runner, known, novel, seen.get("view", {}), events)


def _incidents(run: Run, alertname: str) -> list[dict[str, Any]]:
    with run.stack.api() as api:
        listed: list[dict[str, Any]] = api.get("/api/v1/incidents").json()["incidents"]
    return [i for i in listed if i["alertname"] == alertname]


def test_known_fault_heals_once_with_no_human(run: Run) -> None:
    res = run.known
    assert res.ok, res.reason
    assert res.outcome == "healed"
    view = run.runner.view(res.incident_id)
    assert view["decision"] is None and view["remediations"][-1]["outcome"] == "healed"
    # Nothing twice: one incident, one fix commit on the remote, deployed once.
    assert [i["id"] for i in _incidents(run, "HighErrorRatio")] == [res.incident_id]
    assert len(res.fix_commits) == 1 and res.fix_deploys == 1
    run.stack.repo.sync()
    config = yaml.safe_load((run.stack.repo.dev / run.stack.repo.config_path).read_text())
    assert config["payments"]["timeout_ms"] == 800, "the bad commit stays reverted on the remote"
    # The stages, in order, with times that add up.
    kinds = [k for s, k, _, _ in run.events if s == "bad-config"]
    for a, b in [("fault", "received"), ("received", "playbook_matched"), ("playbook_matched", "verifying")]:
        assert kinds.index(a) < kinds.index(b)
    assert 0 < res.seconds("fault_at", "alert_at")  # type: ignore[operator]
    assert 0 < res.seconds("alert_at", "deployed_at") < res.seconds("alert_at", "verified_at")  # type: ignore[operator]

    ticket = run.runner.ticket(res.ticket_key)
    assert ticket["status"] == "Done"
    page = ticket["description"]
    changes = page.split("## Suspect changes", 1)[1].splitlines()
    assert f"config@{res.fault_sha[:10]}" in changes[4], "the bad commit is the top suspect"
    assert "**affected users: " in page
    assert ticket["attachments"], "metric graphs attached"
    bodies = "\n".join(c["body"] for c in ticket["comments"])
    for step in ("git_revert fix 1", "command test 1", "git_push deploy 1", "http deploy 2", "verify"):
        assert step in bodies, f"ticket lacks step {step}"
    assert f"reverted {res.fault_sha[:12]}" in bodies


def test_novel_fault_escalates_then_its_approved_revert_heals(run: Run) -> None:
    res = run.novel
    assert res.ok, res.reason
    assert res.outcome == "healed_after_approval"
    view = run.runner.view(res.incident_id)
    assert view["decision"]["by"] == DEMO_APPROVER
    assert [i["id"] for i in _incidents(run, "HighLatency")] == [res.incident_id]
    # selfheal reverted exactly the suspect commit, once, and deployed it once.
    assert len(res.fix_commits) == 1 and res.fix_deploys == 1
    assert view["remediations"][-1]["outcome"] == "healed"
    assert 0 < res.seconds("alert_at", "deployed_at") < res.seconds("fault_at", "verified_at")  # type: ignore[operator]
    run.stack.repo.sync()
    config = yaml.safe_load((run.stack.repo.dev / run.stack.repo.config_path).read_text())
    assert config["products"]["page_size"] != 2000, "the suspect commit is reverted on the remote"

    escalated = run.escalated_view
    assert escalated["stage"] == "awaiting_decision"
    investigation = escalated["investigation"]
    assert investigation["matched_playbook"] is None
    fix = investigation["proposed_fix"]
    assert fix["kind"] == "manual" and f"revert config@{res.fault_sha[:7]}" in fix["rationale"]
    assert fix["revert"] == {"repo": "config", "sha": res.fault_sha}
    proposal = escalated["proposal"]
    assert proposal["kind"] == "revert" and proposal["steps"][0] == f"revert commit {res.fault_sha[:12]}"
    assert escalated["remediations"] == [], "nothing ran before the approval"
    sections = {s["source"]: s for s in escalated["evidence"]["sections"]}
    assert sections["similar_incidents"]["similar"][0]["incident_id"] == run.known.incident_id
    assert sections["affected_users"]["figures"]["affected users"] >= 1
    assert sections["changes"]["changes"][0]["sha"] == res.fault_sha

    ticket = run.runner.ticket(res.ticket_key)
    page = ticket["description"]
    assert "## Investigation" in page and f"revert config@{res.fault_sha[:7]}" in page
    assert run.known.incident_id in page, "the earlier incident shows as similar"
    assert proposal["digest"] in page, "the plan's digest is on the ticket"
    bodies = "\n".join(c["body"] for c in ticket["comments"])
    assert "No playbook applies" in bodies and f"(approved by {DEMO_APPROVER})" in bodies
    for step in ("git_revert fix 1", "command test 1", "git_push deploy 1", "http deploy 2", "verify"):
        assert step in bodies, f"ticket lacks step {step}"
    assert ticket["status"] == "Done"


def test_the_novel_fix_is_drafted_as_a_playbook_on_its_ticket(run: Run, tmp_path: Path) -> None:
    """What the demo saves under .selfheal-demo/: the playbook drafted from the approved revert,
    which the real loader accepts and which matches the novel alert's shape."""
    from demo.runner import drafted_playbooks
    from playbooks.loader import load_file

    ((name, data),) = drafted_playbooks(run.stack, run.novel.ticket_key)
    assert name == "shop-high-latency-revert.yaml"
    (tmp_path / name).write_bytes(data)
    playbook, errors = load_file(tmp_path / name)
    assert playbook is not None, errors
    spec = playbook.spec
    assert spec.match.alertname == "HighLatency" and spec.policy.mode == "approve"
    assert {str(m) for m in spec.match.matchers} >= {'service="shop"', 'route="/api/products"'}
    revert = spec.fix[0].git_revert
    assert revert is not None and revert.paths == ["services/{{ params.service }}/config/app.yaml"]
    view = run.runner.view(run.novel.incident_id)
    assert any(e["kind"] == "playbook_drafted" for e in view["timeline"]), view["timeline"]


def test_one_ticket_per_incident(run: Run) -> None:
    keys = {run.known.ticket_key, run.novel.ticket_key}
    assert len(keys) == 2
    numbers = sorted(int(k.rsplit("-", 1)[1]) for k in keys)
    with run.stack.api() as api:
        extra = api.get(f"/api/v1/tickets/LOCAL-{numbers[-1] + 1}")
    assert extra.status_code == 404, "no ticket beyond the two incidents'"
    with httpx.Client() as client:
        active = client.get(f"{run.stack.am_url}/api/v2/alerts", params={"active": "true"}).json()
    assert active == [], "both faults are gone: nothing fires"


def test_demo_without_prometheus_and_apt_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    env.update(PATH=str(tmp_path), SELFHEAL_PROMETHEUS_BIN=str(tmp_path / "no-prometheus"))
    out = subprocess.run(
        [sys.executable, "-m", "selfheal", "demo", "--ticket-dir", str(tmp_path / "t")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "prometheus missing" in lines[0] and "apt-get install prometheus" in lines[0]


def test_demo_playbooks_lint_clean_and_match_the_rules() -> None:
    """Every demo playbook loads, and every known scenario's alert has exactly its playbook."""
    from demo.observability import Timings, rules_yaml
    from demo.stack import PLAYBOOKS_DIR
    from playbooks.loader import lint_paths, load_playbooks

    assert lint_paths([PLAYBOOKS_DIR], known_repos={"config"}) == []
    names = {p.name for p in load_playbooks([PLAYBOOKS_DIR], include_library=False).playbooks}
    rules = {r["alert"] for g in yaml.safe_load(rules_yaml(Timings()))["groups"] for r in g["rules"]}
    for scenario in SCENARIOS.values():
        assert scenario.alertname in rules
        assert (scenario.playbook in names) if scenario.playbook else scenario.expect == "escalated"
