"""Known patterns heal themselves, end to end on real parts.

Real Alertmanager delivers the webhook, real Prometheus scrapes a service whose metric is
derived from what is deployed (the HEAD of a bare git remote), and the fix goes through a real
git worktree, a sandboxed test command and a `git push`. No step is mocked.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import git
import httpx
import pytest
import yaml
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from connectors.local_tracker import LocalTracker
from connectors.temporal import connect
from demo.observability import alertmanager_pair, alertmanager_server
from selfheal.settings import Settings
from selfheal.worker import build_worker
from tests.support.app import ApiServer, make_settings, wait_for_incident
from tests.support.forges import CONFIG, ConfigRepo
from tests.support.pool import PoolCase, PoolTarget, pool_case, pool_playbook
from workflows.control import ControlWorkflow
from workflows.incident import IncidentWorkflow
from workflows.remediation import RemediationWorkflow

pytestmark = pytest.mark.timeout(240)


@dataclass
class Loop:
    settings: Settings
    api: ApiServer
    http: httpx.AsyncClient
    am_url: str
    repo: ConfigRepo
    service: str
    alertname: str
    extra: dict[str, Any] = field(default_factory=dict)
    #: Every Alertmanager alerts go to (both of an HA pair, as Prometheus sends to all).
    am_urls: list[str] = field(default_factory=list)

    async def fire(self, labels: dict[str, str] | None = None, alertname: str | None = None) -> None:
        """Post the alert to Alertmanager (each of a pair), which notifies selfheal itself."""
        alert = {
            "labels": {
                "alertname": alertname or self.alertname,
                "service": self.service,
                "severity": "warning",
                **(labels or {}),
            },
            "annotations": {"summary": "connection pool exhausted"},
            "startsAt": datetime.now(UTC).isoformat(),
            "generatorURL": "http://127.0.0.1/graph",
        }
        async with httpx.AsyncClient() as client:
            for url in self.am_urls or [self.am_url]:
                resp = await client.post(f"{url}/api/v2/alerts", json=[alert])
                assert resp.status_code == 200, resp.text

    async def incident_for(self, alertname: str | None = None, timeout: float = 60) -> str:
        name = alertname or self.alertname
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            listed = (await self.http.get("/api/v1/incidents")).json()["incidents"]
            ids = [i["id"] for i in listed if i["alertname"] == name]
            if ids:
                return str(ids[0])
            await asyncio.sleep(0.2)
        raise AssertionError(f"no incident for {name}")

    async def wait(self, incident_id: str, pred: Any, timeout: float = 120) -> dict[str, Any]:
        return await wait_for_incident(self.http, incident_id, pred, timeout)

    def remote_commits(self) -> list[git.Commit]:
        return list(git.Repo(self.repo.remote).iter_commits("main"))

    def pool_size(self) -> int:
        return self.repo.pool_size()

    def deploys(self) -> int:
        return self.repo.deploys()


def loop_settings(
    address: str, case: PoolCase, prom_url: str, services: dict[str, Any] | None = None, **extra: Any
) -> Settings:
    return make_settings(
        address,
        case.repo.root / "data",
        remediation={
            **case.remediation(prom_url),
            "alertmanager_url": None,
            # Alertmanager starts with each test: ask it as one that has long been running (an
            # absent alert is resolved), which is what these tests are about.
            "alertmanager_warmup_seconds": 0,
            "services": services or {},
        },
        **extra,
    )


@pytest.fixture
async def loop_factory(
    temporal_address: str, tmp_path: Path, pool_prom: tuple[str, PoolTarget]
) -> AsyncIterator[Any]:
    prom_url, target = pool_prom
    stacks: list[Any] = []

    async def make(
        playbooks: dict[str, str],
        *,
        in_process_worker: bool = True,
        worker_alertmanager_url: str | None = None,
        ha_pair: bool = False,
        service_defaults: dict[str, Any] | None = None,
        watch_changes: bool = False,
        **extra: Any,
    ) -> Loop:
        """`worker_alertmanager_url` points the worker at another Alertmanager than the one alerts
        go to; `ha_pair` runs two clustered Alertmanagers instead of one; `service_defaults` are
        the service's `remediation.services` entry; with them or `watch_changes` the remote's
        commits are suspect changes (`evidence.change_repos`)."""
        case = pool_case(tmp_path, target, playbooks)
        root, remote = case.repo.root, case.repo.remote
        # The API's port must be known before Alertmanager starts: reserve the settings first.
        if service_defaults is not None or watch_changes:
            extra.setdefault(
                "evidence",
                {
                    "change_repos": {"config": str(remote)},
                    "default_service": {"paths": ["services/{service}/**"]},
                },
            )
        services = {case.service: service_defaults} if service_defaults is not None else None
        settings = loop_settings(temporal_address, case, prom_url, services, **extra)
        api = ApiServer(settings)
        token = settings.webhook_token.get_secret_value()  # type: ignore[union-attr]
        hook = f"{api.url}/api/v1/alerts"
        am_urls: list[str] = []
        if ha_pair:
            am_cm: Any = alertmanager_pair(root / "am", hook, token)
            am_urls = am_cm.__enter__()
            am_url = am_urls[0]
        else:
            am_cm = alertmanager_server(root / "am", webhook_url=hook, token=token)
            am_url = am_cm.__enter__()
        settings.remediation.alertmanager_url = worker_alertmanager_url or am_url
        api.__enter__()
        worker_cm = None
        if in_process_worker:
            client = await connect(settings.temporal)
            worker_cm = build_worker(client, settings)
            await worker_cm.__aenter__()
        http = api.client()
        stacks.append((am_cm, api, worker_cm, http))
        return Loop(settings, api, http, am_url, case.repo, case.service, case.alertname, am_urls=am_urls)

    yield make
    for am_cm, api, worker_cm, http in reversed(stacks):
        await http.aclose()
        if worker_cm is not None:
            await worker_cm.__aexit__(None, None, None)
        api.__exit__(None, None, None)
        am_cm.__exit__(None, None, None)


def kinds(view: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in view["timeline"]]


async def test_known_pattern_heals_with_no_human(loop_factory: Any) -> None:
    lp: Loop = await loop_factory({"pool": pool_playbook("pool-raise", "ALERTNAME")})
    assert lp.pool_size() == 5
    await lp.fire()
    incident_id = await lp.incident_for()
    view = await lp.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "healed"
    assert view["decision"] is None
    stages = kinds(view)
    assert stages.index("ticketed") < stages.index("playbook_matched") < stages.index("remediation_started")
    assert "verifying" in stages and "remediation_healed" in stages
    assert lp.pool_size() == 20
    fixes = [c for c in lp.remote_commits() if f"Selfheal-Incident: {incident_id}" in c.message]
    assert len(fixes) == 1 and lp.deploys() == 1
    ticket = (await lp.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert ticket["status"] == "Done"
    bodies = "\n".join(c["body"] for c in ticket["comments"])
    for step in ("git_edit fix 1", "command test 1", "git_push deploy 1", "verify"):
        assert step in bodies, f"ticket lacks step {step}"
    assert " in " in bodies and "s" in bodies  # each step carries its timing
    assert view["remediations"][0]["outcome"] == "healed"

    # Both workflows' histories replay deterministically against today's code.
    client = await connect(lp.settings.temporal)
    replayer = Replayer(
        workflows=[IncidentWorkflow, RemediationWorkflow, ControlWorkflow],
        data_converter=pydantic_data_converter,
    )
    group = incident_id.rsplit("-", 1)[0]
    for wid in (f"incident-{group}", f"remediation-{lp.service}"):
        history = await client.get_workflow_handle(wid).fetch_history()
        await replayer.replay_workflow(history)


async def test_alertmanager_ha_pair_makes_one_incident_one_ticket_one_fix(loop_factory: Any) -> None:
    """Two gossiping Alertmanagers each get the alert and each may notify: selfheal opens one
    incident with one ticket and makes one fix commit and one deploy."""
    lp: Loop = await loop_factory({"pool": pool_playbook("pool-raise", "ALERTNAME")}, ha_pair=True)
    await lp.fire()
    incident_id = await lp.incident_for()
    view = await lp.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "healed"
    listed = (await lp.http.get("/api/v1/incidents")).json()["incidents"]
    assert [i["id"] for i in listed if i["alertname"] == lp.alertname] == [incident_id]
    assert LocalTracker(lp.settings.local_db_path).count() == 1
    fixes = [c for c in lp.remote_commits() if f"Selfheal-Incident: {incident_id}" in c.message]
    assert len(fixes) == 1 and lp.deploys() == 1
    assert lp.pool_size() == 20
    for url in lp.am_urls:  # both peers really are one cluster
        status = httpx.get(f"{url}/api/v2/status", timeout=5).json()
        assert len(status["cluster"]["peers"]) == 2, status["cluster"]


async def test_failed_verify_rolls_back_and_escalates(loop_factory: Any) -> None:
    lp: Loop = await loop_factory(
        {"pool": pool_playbook("pool-small", "ALERTNAME", scale=2, verify_timeout="6s")}
    )
    await lp.fire()
    incident_id = await lp.incident_for()
    view = await lp.wait(incident_id, lambda v: v["stage"] == "awaiting_decision" and v["remediations"])
    assert view["remediations"][-1]["outcome"] == "rolled_back"
    assert "verification failed" in view["remediations"][-1]["reason"]
    assert lp.pool_size() == 5, "the rollback restored the deployed value"
    messages = [c.message for c in lp.remote_commits()]
    assert any(f"Selfheal-Rollback: {incident_id}" in m for m in messages)
    assert lp.deploys() == 2
    ticket = (await lp.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert any("did not hold" in c["body"] for c in ticket["comments"])


async def test_circuit_breaker_stops_a_second_run(loop_factory: Any) -> None:
    lp: Loop = await loop_factory(
        {"pool": pool_playbook("pool-once-" + uuid.uuid4().hex[:6], "ALERTNAME", max_runs=1)}
    )
    await lp.fire()
    first = await lp.incident_for()
    await lp.wait(first, lambda v: v["stage"] == "closed")
    # Same playbook, another group of the same alert (another instance label).
    other = lp.alertname + "b"
    (lp.repo.root / "playbooks" / "pool.yaml").read_text()
    await lp.fire({"instance": "second"}, alertname=lp.alertname)
    deadline = asyncio.get_running_loop().time() + 60
    second = None
    while asyncio.get_running_loop().time() < deadline and second is None:
        listed = (await lp.http.get("/api/v1/incidents")).json()["incidents"]
        ids = [i["id"] for i in listed if i["alertname"] == lp.alertname and i["id"] != first]
        second = ids[0] if ids else None
        await asyncio.sleep(0.2)
    assert second is not None, other
    view = await lp.wait(second, lambda v: v["stage"] == "awaiting_decision" and v["remediations"])
    assert view["remediations"][-1]["outcome"] == "blocked"
    assert "circuit open" in view["remediations"][-1]["reason"]
    assert lp.deploys() == 1


async def test_pause_escalates_and_approval_runs_the_fix(loop_factory: Any) -> None:
    diagnose = [
        {
            "name": "pool exhausted",
            "query": 'demo_pool_exhausted{service="{{ params.service }}"}',
            "condition": "> 0",
        },
        {"name": "something is scraped", "query": "count(up)", "condition": "> 0"},
    ]
    lp: Loop = await loop_factory({"pool": pool_playbook("pool-paused", "ALERTNAME", diagnose=diagnose)})
    paused = await lp.http.post("/api/v1/remediation/pause", json={"by": "oncall", "reason": "maintenance"})
    assert paused.status_code == 200 and paused.json()["paused"] is True
    try:
        await lp.fire()
        incident_id = await lp.incident_for()
        view = await lp.wait(incident_id, lambda v: v["stage"] == "awaiting_decision")
        assert view["remediations"][-1]["outcome"] == "blocked"
        assert "paused by oncall" in view["remediations"][-1]["reason"]
        assert view["proposal"]["playbook"] == "pool-paused"
        assert lp.deploys() == 0
        # The builtin investigator ran the playbook's diagnose checks against the real Prometheus.
        inv = view["investigation"]
        checks = {d["name"]: d for d in inv["diagnose"]}
        assert checks["pool exhausted"]["passed"] is True and checks["pool exhausted"]["value"] == 1.0
        assert checks["something is scraped"]["passed"] is True, inv["diagnose"]
        assert inv["matched_playbook"] == "pool-paused"
        assert inv["proposed_fix"] == {**inv["proposed_fix"], "kind": "playbook", "playbook": "pool-paused"}
        assert "pool-paused applies and its diagnose checks hold" in inv["hypotheses"][0]["title"]
        resp = await lp.http.post(f"/api/v1/incidents/{incident_id}/decision", json={"decision": "approve"})
        assert resp.status_code == 200, resp.text
        view = await lp.wait(incident_id, lambda v: v["stage"] == "closed")
        assert view["outcome"] == "healed_after_approval"
        assert lp.pool_size() == 20 and lp.deploys() == 1
    finally:
        resumed = await lp.http.post("/api/v1/remediation/resume", json={"by": "oncall"})
        assert resumed.status_code == 200 and resumed.json()["paused"] is False


@pytest.mark.parametrize("value", ["x; rm -rf /", "$(id)", "../../etc", "{{ 7*7 }}"])
async def test_hostile_label_never_reaches_a_command(loop_factory: Any, value: str) -> None:
    lp: Loop = await loop_factory({"pool": pool_playbook("pool-hostile", "ALERTNAME")})
    lp.service = value
    await lp.fire()
    incident_id = await lp.incident_for()
    view = await lp.wait(incident_id, lambda v: v["stage"] == "awaiting_decision")
    assert "no_playbook" in kinds(view)
    reason = next(e["message"] for e in view["timeline"] if e["kind"] == "no_playbook")
    assert "does not match" in reason
    assert view["proposal"] is None and lp.deploys() == 0
    assert not (lp.settings.worktrees_dir / incident_id).exists()


async def test_fix_approved_after_the_alert_resolved_takes_no_action(loop_factory: Any) -> None:
    """Robusta #345: a fix must not fire on an alert that already resolved. The check asks
    Alertmanager itself right before acting, whatever the incident last heard."""
    lp: Loop = await loop_factory({"pool": pool_playbook("pool-resolved", "ALERTNAME", mode="approve")})
    labels = {"alertname": lp.alertname, "service": lp.service, "severity": "warning"}
    await lp.fire()
    incident_id = await lp.incident_for()
    view = await lp.wait(incident_id, lambda v: v["stage"] == "awaiting_decision")
    assert view["proposal"]["mode"] == "approve" and not view["remediations"]
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"{lp.am_url}/api/v2/alerts",
            json=[{"labels": labels, "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2020-01-01T00:00:01Z"}],
        )
        assert resp.status_code == 200
    resp = await lp.http.post(f"/api/v1/incidents/{incident_id}/decision", json={"decision": "approve"})
    assert resp.status_code == 200, resp.text
    view = await lp.wait(incident_id, lambda v: bool(v["remediations"]))
    assert view["remediations"][-1]["outcome"] == "skipped"
    assert "already resolved" in view["remediations"][-1]["reason"]
    assert lp.deploys() == 0 and lp.pool_size() == 5
    assert not [c for c in git.Repo(lp.repo.work).iter_commits("--all") if "Selfheal-Incident" in c.message]


async def test_two_incidents_on_one_service_never_remediate_concurrently(loop_factory: Any) -> None:
    slow = ["sh", "-c", "sleep 2; grep -q size: services/{{ params.service }}/config.yaml"]
    lp: Loop = await loop_factory(
        {
            "a": pool_playbook("pool-a", "ALERTNAME", test_argv=slow),
            "b": pool_playbook("pool-b", "ALERTNAMEB", test_argv=slow),
        }
    )
    await asyncio.gather(lp.fire(), lp.fire(alertname=lp.alertname + "B"))
    first = await lp.incident_for()
    second = await lp.incident_for(lp.alertname + "B")
    views = [await lp.wait(i, lambda v: v["stage"] == "closed", timeout=180) for i in (first, second)]
    assert all(v["outcome"] == "healed" for v in views)

    def window(view: dict[str, Any]) -> tuple[str, str]:
        started = next(e["at"] for e in view["timeline"] if e["kind"] == "remediation_started")
        ended = next(e["at"] for e in view["timeline"] if e["kind"] == "remediation_healed")
        return started, ended

    (a_start, a_end), (b_start, b_end) = window(views[0]), window(views[1])
    assert a_end <= b_start or b_end <= a_start, "the two remediations overlapped"
    assert any("remediation_waiting" in kinds(v) for v in views)
    # Whichever ran first raised 5 → 20; the second then found 20 and raised it to 80.
    assert lp.deploys() == 2 and lp.pool_size() == 80


async def test_worker_killed_between_fix_and_deploy_commits_and_deploys_once(
    loop_factory: Any, temporal_address: str
) -> None:
    gate = ["sh", "-c", "touch started; while [ ! -e release ]; do sleep 0.1; done"]
    lp: Loop = await loop_factory(
        {"pool": pool_playbook("pool-crash", "ALERTNAME", test_argv=gate)}, in_process_worker=False
    )
    s = lp.settings
    config = {
        "env": "dev",
        "data_dir": str(s.data_dir),
        "temporal": {"address": temporal_address, "task_queue": s.temporal.task_queue},
        "remediation": {
            "include_library": False,
            "playbook_dirs": [str(p) for p in s.remediation.playbook_dirs],
            "repos": {"config": {"path": str(lp.repo.work)}},
            "prometheus_url": s.remediation.prometheus_url,
            "alertmanager_url": lp.am_url,
            "verify_poll_seconds": 0.5,
        },
    }
    cfg = lp.repo.root / "worker.yaml"
    cfg.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    env["SELFHEAL_CONFIG"] = str(cfg)

    def start_worker(name: str) -> subprocess.Popen[bytes]:
        log = (lp.repo.root / f"{name}.log").open("wb")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "selfheal", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    first = start_worker("worker1")
    second: subprocess.Popen[bytes] | None = None
    try:
        await lp.fire()
        incident_id = await lp.incident_for()
        worktree = s.worktrees_dir / incident_id
        deadline = asyncio.get_running_loop().time() + 90
        while not (worktree / "started").exists():
            assert asyncio.get_running_loop().time() < deadline, "the test step never started"
            await asyncio.sleep(0.1)
        fixes = [
            c
            for c in git.Repo(lp.repo.work).iter_commits(f"selfheal/{incident_id}")
            if f"Selfheal-Incident: {incident_id}" in c.message
        ]
        assert len(fixes) == 1 and lp.deploys() == 0, "killed after the fix commit, before the deploy"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        (worktree / "release").touch()
        second = start_worker("worker2")
        view = await lp.wait(incident_id, lambda v: v["stage"] == "closed", timeout=150)
        assert view["outcome"] == "healed"
        on_remote = [c for c in lp.remote_commits() if f"Selfheal-Incident: {incident_id}" in c.message]
        assert len(on_remote) == 1
        assert lp.deploys() == 1
        assert lp.pool_size() == 20
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


async def test_unreachable_alertmanager_fails_safe_and_escalates(loop_factory: Any) -> None:
    """If selfheal cannot confirm the alert still fires, it changes nothing and asks humans."""
    from devstack.temporal_server import free_port

    lp: Loop = await loop_factory(
        {"pool": pool_playbook("pool-no-am", "ALERTNAME")},
        worker_alertmanager_url=f"http://127.0.0.1:{free_port()}",
    )
    await lp.fire()
    incident_id = await lp.incident_for()
    view = await lp.wait(incident_id, lambda v: v["stage"] == "awaiting_decision" and v["remediations"])
    last = view["remediations"][-1]
    assert last["outcome"] == "failed" and "nothing was changed" in last["reason"]
    assert lp.deploys() == 0 and lp.pool_size() == 5


async def test_novel_incident_ticket_carries_evidence_and_similar_incidents(
    loop_factory: Any, pool_prom: tuple[str, PoolTarget]
) -> None:
    from connectors.prometheus import PrometheusClient

    lp: Loop = await loop_factory(
        {},
        evidence={
            "default_service": {
                "golden_signals": {"pool exhausted": 'demo_pool_exhausted{service="{service}"}'},
                "affected_users": 'sum(demo_pool_exhausted{service="{service}"}) * 42',
                "paths": ["services/{service}/**"],
            }
        },
    )
    # Evidence graphs an hour at 15 s steps: wait until the series is old enough to have a point.
    query = f'demo_pool_exhausted{{service="{lp.service}"}}'
    with PrometheusClient(pool_prom[0], timeout=5) as client:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            end = datetime.now(UTC)
            series = client.query_range(query, end - timedelta(seconds=3600), end, 15)
            if series and series[0].samples:
                break
            assert asyncio.get_running_loop().time() < deadline, "Prometheus has no range points yet"
            await asyncio.sleep(0.5)
    await lp.fire()
    first = await lp.incident_for()
    view = await lp.wait(first, lambda v: v["stage"] == "awaiting_decision")
    sections = {s["source"]: s for s in view["evidence"]["sections"]}
    assert sections["metrics"]["status"] == "ok", sections["metrics"]
    assert sections["affected_users"]["figures"] == {"affected users": 42.0}
    assert sections["changes"]["status"] == "ok"
    assert sections["changes"]["changes"][0]["summary"] == "initial config"
    assert sections["changes"]["changes"][0]["score"] > 1.0, "touches the service's own paths"
    assert sections["similar_incidents"]["status"] == "empty"
    ticket = (await lp.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    page = ticket["description"]
    assert "## Evidence" in page and "## Suspect changes" in page and "**affected users: 42**" in page
    assert "| initial config |" in page, "the suspect commit is a row of the changes table"
    assert "![graph of" in page and f"]({first}-graph-1.png)" in page, "the attached graph is embedded"
    assert [a["filename"] for a in ticket["attachments"]] == [f"{first}-graph-1.png"]
    inv = view["investigation"]
    assert inv["investigator"] == "builtin" and inv["matched_playbook"] is None
    assert "Novel: no playbook matched" in inv["summary"]
    top = inv["hypotheses"][0]
    assert "initial config" in top["title"] and top["evidence"][0].startswith("changes:config@")
    assert "## Investigation" in page and "Novel: no playbook matched" in page, "the page carries it"
    resp = await lp.http.post(
        f"/api/v1/incidents/{first}/decision",
        json={"decision": "reject", "by": "oncall", "comment": "bumped pool"},
    )
    assert resp.status_code == 200
    await lp.wait(first, lambda v: v["stage"] == "closed")

    # The next incident on this service finds the first one, with what the humans did.
    await lp.fire(alertname=lp.alertname + "Again")
    second = await lp.incident_for(lp.alertname + "Again")
    view = await lp.wait(second, lambda v: v["stage"] == "awaiting_decision")
    similar = {s["source"]: s for s in view["evidence"]["sections"]}["similar_incidents"]
    assert similar["status"] == "ok"
    assert similar["similar"][0]["incident_id"] == first
    assert similar["similar"][0]["outcome"] == "rejected"
    assert "bumped pool" in similar["similar"][0]["fix"]
    page = (await lp.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()["description"]
    assert "## Similar incidents" in page and "| rejected |" in page and "bumped pool" in page


async def test_evidence_reads_loki_logs_and_tempo_traces_into_the_investigation(loop_factory: Any) -> None:
    """Logs (Loki's documented query_range) and error traces (Tempo's search) reach the view,
    redacted and deduplicated, and a new error line becomes the investigation's lead."""
    from tests.support.loki_fake import FakeLoki
    from tests.support.traces_fake import FakeServer

    now = datetime.now(UTC)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    def tempo(params: dict[str, str], _: dict[str, str]) -> tuple[int, Any]:
        if "status=error" not in params.get("tags", "") or int(params["end"]) <= int(params["start"]):
            return 400, "bad search"
        return 200, {
            "traces": [
                {
                    "traceID": trace_id,
                    "rootServiceName": "svc",
                    "rootTraceName": "POST /pool",
                    "startTimeUnixNano": str(int(now.timestamp()) * 10**9),
                    "durationMs": 5003,
                }
            ]
        }

    traces = FakeServer("/api/search", tempo)
    with FakeLoki() as loki:
        try:
            lp: Loop = await loop_factory(
                {},
                evidence={
                    "loki_url": loki.url,
                    "tempo_url": traces.url,
                    "traces_ui_url": "https://grafana.example/explore?trace={trace_id}",
                    "default_service": {"logql": '{service="{service}"}'},
                },
            )
            for i in range(30):
                loki.add(
                    now - timedelta(seconds=i),
                    f"ERROR pool exhausted after {i}ms token=s3cr3tvalue",
                    service=lp.service,
                )
            loki.add(now, "INFO unrelated line", service="someone-else")
            await lp.fire()
            incident_id = await lp.incident_for()
            view = await lp.wait(incident_id, lambda v: v["stage"] == "awaiting_decision")
        finally:
            traces.close()
    sections = {s["source"]: s for s in view["evidence"]["sections"]}
    logs = sections["logs"]
    assert logs["status"] == "ok" and logs["query"] == f'{{service="{lp.service}"}}'
    assert len(logs["logs"]) == 1 and logs["logs"][0]["count"] == 30, "30 lines of one shape fold into one"
    assert "s3cr3tvalue" not in json.dumps(view), "the token never leaves the worker"
    assert sections["traces"]["status"] == "ok"
    assert sections["traces"]["traces"][0]["trace_id"] == trace_id
    assert sections["traces"]["traces"][0]["url"] == f"https://grafana.example/explore?trace={trace_id}"
    top = view["investigation"]["hypotheses"][0]
    assert "ERROR pool exhausted" in top["title"] and top["evidence"] == ["logs:0"]
    ticket = (await lp.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert trace_id in ticket["description"] and "s3cr3tvalue" not in ticket["description"]


async def test_loop_metrics_count_healed_and_rolled_back_incidents(loop_factory: Any) -> None:
    """/metrics (scraped over HTTP, parsed) reflects what the loop did, from the incident store."""
    from tests.support.loop_metrics import scrape_api, value

    healed: Loop = await loop_factory({"pool": pool_playbook("pool-metrics", "ALERTNAME")})
    await healed.fire()
    first = await healed.incident_for()
    view = await healed.wait(first, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "healed"
    s = await scrape_api(healed.http)
    assert value(s, "selfheal_incidents_total", outcome="auto_healed", category="capacity") == 1.0
    assert value(s, "selfheal_playbook_runs_total", playbook="pool-metrics", result="healed") == 1.0
    assert value(s, "selfheal_self_healing_success_ratio") == 1.0
    at = {e["kind"]: datetime.fromisoformat(e["at"]) for e in view["timeline"]}
    start = min(datetime.fromisoformat(a["startsAt"]) for a in view["alerts"])
    deployed = value(s, "selfheal_alert_to_deployed_seconds_sum", category="capacity")
    verified = value(s, "selfheal_alert_to_verified_seconds_sum", category="capacity")
    assert deployed == pytest.approx((at["verifying"] - start).total_seconds(), abs=1e-3)
    assert verified == pytest.approx((at["remediation_healed"] - start).total_seconds(), abs=1e-3)
    assert 0 < deployed < verified
    assert value(s, "selfheal_alert_to_verified_seconds_count", category="capacity") == 1.0

    rolled: Loop = await loop_factory(
        {"pool": pool_playbook("pool-metrics-small", "ALERTNAME", scale=2, verify_timeout="6s")}
    )
    await rolled.fire()
    second = await rolled.incident_for()
    await rolled.wait(second, lambda v: v["stage"] == "awaiting_decision" and v["remediations"])
    resp = await rolled.http.post(
        f"/api/v1/incidents/{second}/decision", json={"decision": "reject", "by": "oncall"}
    )
    assert resp.status_code == 200, resp.text
    await rolled.wait(second, lambda v: v["stage"] == "closed")
    s = await scrape_api(rolled.http)
    assert value(s, "selfheal_incidents_total", outcome="rolled_back", category="capacity") == 1.0
    runs = value(s, "selfheal_playbook_runs_total", playbook="pool-metrics-small", result="rolled_back")
    assert runs == 1.0
    assert value(s, "selfheal_self_healing_success_ratio") == 0.0
    assert value(s, "selfheal_alert_to_deployed_seconds_count", category="capacity") is None


# --- an investigation's proposed revert, approved --------------------------------------------------

SERVICE_DEFAULTS: dict[str, Any] = {
    "repo": "config",
    "test": [{"command": {"argv": ["grep", "-q", "size:", "services/{{ params.service }}/config.yaml"]}}],
    "deploy": [{"git_push": {"branch": "main"}}],
    "verify": {
        "query": 'demo_pool_exhausted{service="{{ params.service }}"}',
        "condition": "< 1",
        "hold_for": "2s",
        "timeout": "40s",
        "alert_resolved": False,
    },
}


def break_config(lp: Loop) -> str:
    """A colleague's two pushes: a healthy pool long ago, then a shrunk one just now (the fault)."""
    clone = lp.repo.root / "colleague"
    repo = git.Repo.clone_from(str(lp.repo.remote), clone, branch="main")
    path = clone / CONFIG.format(service=lp.service)
    shas = []
    for size, message, age in ((20, "pool: size the pool for peak", 7200), (2, "pool: save connections", 0)):
        path.write_text(f"# pool settings\npool:\n  size: {size}\n  timeout: 30s\n")
        repo.index.add([str(path)])
        when = f"{int(datetime.now(UTC).timestamp()) - age} +0000"
        shas.append(repo.index.commit(message, author_date=when, commit_date=when).hexsha)
    repo.remote("origin").push("main:main")
    return shas[-1]


async def test_an_approved_proposed_revert_heals_end_to_end(loop_factory: Any) -> None:
    """No playbook: the investigation names the bad commit, selfheal plans its revert with the
    service's defaults, nothing runs until approved; a stale digest is refused, the right one runs
    the revert through worktree, sandboxed test, push and verify."""
    lp: Loop = await loop_factory({}, service_defaults=SERVICE_DEFAULTS)
    bad = break_config(lp)
    assert lp.pool_size() == 2
    pushed = lp.deploys()  # the colleague's push deployed the fault
    await lp.fire()
    incident_id = await lp.incident_for()
    view = await lp.wait(incident_id, lambda v: v["stage"] == "awaiting_decision")
    fix = view["investigation"]["proposed_fix"]
    assert fix["revert"] == {"repo": "config", "sha": bad}, view["investigation"]
    proposal = view["proposal"]
    assert proposal["kind"] == "revert" and proposal["mode"] == "approve" and len(proposal["digest"]) == 64
    assert proposal["steps"][0] == f"revert commit {bad[:12]}"
    assert "pool: save connections" in proposal["description"]
    stages = kinds(view)
    assert stages.index("investigated") < stages.index("proposal_planned") < stages.index("escalated")
    assert lp.deploys() == pushed and not view["remediations"]  # nothing runs without a decision
    ticket_key = view["ticket"]["key"]
    page = (await lp.http.get(f"/api/v1/incidents/{incident_id}/page")).json()["page"]
    assert proposal["digest"] in page and f"revert commit {bad[:12]}" in page

    stale = await lp.http.post(
        f"/api/v1/incidents/{incident_id}/decision", json={"decision": "approve", "plan_digest": "0123abcd"}
    )
    assert stale.status_code == 409 and "needs a new approval" in stale.json()["error"], stale.text
    view = await lp.wait(incident_id, lambda v: "decision_refused" in kinds(v))
    assert view["stage"] == "awaiting_decision" and view["decision"] is None and lp.deploys() == pushed
    ticket = (await lp.http.get(f"/api/v1/tickets/{ticket_key}")).json()
    assert any("plan 0123abcd was approved" in c["body"] for c in ticket["comments"])

    resp = await lp.http.post(
        f"/api/v1/incidents/{incident_id}/decision",
        json={"decision": "approve", "plan_digest": proposal["digest"][:12]},
    )
    assert resp.status_code == 200, resp.text
    view = await lp.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "healed_after_approval", view["remediations"]
    assert view["remediations"][-1]["playbook"] == "proposed-revert"
    assert lp.pool_size() == 20 and lp.deploys() == pushed + 1
    fixes = [c for c in lp.remote_commits() if f"Selfheal-Incident: {incident_id}" in c.message]
    assert len(fixes) == 1 and fixes[0].parents[0].hexsha == bad
    ticket = (await lp.http.get(f"/api/v1/tickets/{ticket_key}")).json()
    bodies = "\n".join(c["body"] for c in ticket["comments"])
    for step in ("git_revert fix 1", "command test 1", "git_push deploy 1", "verify", "(approved by oncall)"):
        assert step in bodies, f"ticket lacks {step}"
    assert ticket["status"] == "Done"


async def test_a_proposal_selfheal_may_not_run_is_refused_on_the_ticket(loop_factory: Any) -> None:
    """The suspect commit is in a watched repository, but the service has no defaults: the reason
    goes on the ticket and an approval only acknowledges (nothing runs)."""
    lp: Loop = await loop_factory({}, watch_changes=True)
    bad = break_config(lp)
    pushed = lp.deploys()
    await lp.fire()
    incident_id = await lp.incident_for()
    view = await lp.wait(incident_id, lambda v: v["stage"] == "awaiting_decision")
    assert view["investigation"]["proposed_fix"]["revert"]["sha"] == bad
    assert view["proposal"] is None
    refused = next(e["message"] for e in view["timeline"] if e["kind"] == "proposal_refused")
    assert f"no remediation.services.{lp.service} defaults" in refused
    ticket = (await lp.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert any("cannot be run by selfheal" in c["body"] for c in ticket["comments"])
    resp = await lp.http.post(f"/api/v1/incidents/{incident_id}/decision", json={"decision": "approve"})
    assert resp.status_code == 200, resp.text
    view = await lp.wait(incident_id, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "approved" and lp.deploys() == pushed and lp.pool_size() == 2


# --- the loop learns: the approved revert drafted as a playbook, merged, matched next time ----------


async def post_alert(
    lp: Loop, labels: dict[str, str], starts: datetime, ends: datetime | None = None
) -> None:
    alert: dict[str, Any] = {"labels": labels, "annotations": {}, "startsAt": starts.isoformat()}
    if ends is not None:
        alert["endsAt"] = ends.isoformat()
    async with httpx.AsyncClient() as client:
        resp = await client.post(f"{lp.am_url}/api/v2/alerts", json=[alert])
        assert resp.status_code == 200, resp.text


def playbooks_repo(root: Path) -> tuple[Path, Path, Path]:
    """The playbooks repository: a bare remote, selfheal's clone (where drafts are pushed from) and
    the checkout the worker loads playbooks from (what a merge lands in)."""
    remote = root / "playbooks.git"
    git.Repo.init(remote, bare=True, initial_branch="main")
    seed = git.Repo.init(root / "playbooks-seed", initial_branch="main")
    keep = root / "playbooks-seed" / "playbooks" / "README.md"
    keep.parent.mkdir(parents=True)
    keep.write_text("Playbooks reviewed by the SRE team.\n")
    seed.index.add([str(keep)])
    seed.index.commit("playbooks")
    seed.create_remote("origin", str(remote)).push("main:main")
    work = root / "playbooks-selfheal"
    checkout = root / "playbooks-checkout"
    git.Repo.clone_from(str(remote), work, branch="main")
    git.Repo.clone_from(str(remote), checkout, branch="main")
    return remote, work, checkout


async def test_an_approved_revert_becomes_a_playbook_that_the_next_incident_matches(
    loop_factory: Any,
) -> None:
    """Round 1: a novel incident healed by the approved revert drafts a playbook (lints clean,
    attached, pushed once as a branch). An SRE merges it; a new worker loads it. Round 2: the same
    fault on another pod matches the draft, which reverts the new bad commit once approved."""
    from connectors.git.settings import RepoSettings
    from playbooks.draft import draft_name
    from tests.support.loop_metrics import scrape_api, value

    lp: Loop = await loop_factory({}, service_defaults=SERVICE_DEFAULTS, in_process_worker=False)
    pb_remote, pb_work, checkout = playbooks_repo(lp.repo.root)
    section = lp.settings.remediation
    section.repos["playbooks"] = RepoSettings(path=pb_work)
    section.playbooks_repo = "playbooks"
    section.playbooks_repo_dir = "playbooks"
    section.playbook_dirs = [*section.playbook_dirs, checkout / "playbooks"]
    client = await connect(lp.settings.temporal)
    labels = {"alertname": lp.alertname, "service": lp.service, "severity": "warning"}
    pod1 = {**labels, "pod": f"{lp.service}-5d4c3b2a1f-abcde"}

    async with build_worker(client, lp.settings):
        bad = break_config(lp)
        now = datetime.now(UTC)
        await post_alert(lp, pod1, now)
        first = await lp.incident_for()
        view = await lp.wait(first, lambda v: v["stage"] == "awaiting_decision")
        assert view["proposal"]["kind"] == "revert", view["timeline"]
        resp = await lp.http.post(
            f"/api/v1/incidents/{first}/decision",
            json={"decision": "approve", "plan_digest": view["proposal"]["digest"]},
        )
        assert resp.status_code == 200, resp.text
        view = await lp.wait(first, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "healed_after_approval" and lp.pool_size() == 20, view["remediations"]
    drafted = next(e for e in view["timeline"] if e["kind"] == "playbook_drafted")
    name, branch = drafted["data"]["name"], drafted["data"]["branch"]
    assert name == draft_name(lp.service, lp.alertname, "revert")
    assert branch == f"selfheal/draft-{first}"
    assert drafted["data"]["pull_request"] == ""  # no forge for the playbooks repository here
    ticket = (await lp.http.get(f"/api/v1/tickets/{view['ticket']['key']}")).json()
    assert [a["filename"] for a in ticket["attachments"] if a["filename"].endswith(".yaml")] == [
        f"{name}.yaml"
    ]
    assert any(f"drafted playbook {name}" in c["body"] and branch in c["body"] for c in ticket["comments"])
    remote = git.Repo(pb_remote)
    assert [h.name for h in remote.heads] == ["main", branch] or sorted(
        h.name for h in remote.heads
    ) == sorted(["main", branch])
    assert len(list(remote.iter_commits(f"main..{branch}"))) == 1
    text = remote.git.show(f"{branch}:playbooks/{name}.yaml")
    assert "mode: approve" in text and "since: 10m" in text and "pod:" in text and bad[:12] in text

    # The SRE merges the branch; the configured playbook dir is a checkout of main.
    sre = git.Repo.clone_from(str(pb_remote), lp.repo.root / "sre", branch="main")
    sre.git.fetch("origin", branch)
    sre.git.merge("--ff-only", "FETCH_HEAD")
    sre.remote("origin").push("main:main")
    git.Repo(checkout).git.pull("--ff-only", "origin", "main")
    assert (checkout / "playbooks" / f"{name}.yaml").read_text().strip() == text.strip()

    # Round 2: a new worker loads the merged draft; the same fault comes back on another pod.
    async with build_worker(client, lp.settings):
        await post_alert(lp, pod1, now, ends=datetime.now(UTC))  # round 1's alert resolves
        colleague = git.Repo(lp.repo.root / "colleague")
        colleague.git.pull("--ff-only", "origin", "main")
        path = lp.repo.root / "colleague" / CONFIG.format(service=lp.service)
        path.write_text("# pool settings\npool:\n  size: 3\n  timeout: 30s\n")
        colleague.index.add([str(path)])
        # Dated an hour ago with the alert 3 s later: round 1's commits are outside its window.
        when = datetime.now(UTC) - timedelta(hours=1)
        stamp = f"{int(when.timestamp())} +0000"
        second_bad = colleague.index.commit("pool: 3 is plenty", author_date=stamp, commit_date=stamp).hexsha
        colleague.remote("origin").push("main:main")
        assert lp.pool_size() == 3
        await post_alert(lp, {**labels, "pod": f"{lp.service}-6e5d4c3b2a-fghij"}, when + timedelta(seconds=3))
        deadline = asyncio.get_running_loop().time() + 60
        second = None
        while second is None:
            assert asyncio.get_running_loop().time() < deadline, "no second incident"
            listed = (await lp.http.get("/api/v1/incidents")).json()["incidents"]
            second = next(
                (i["id"] for i in listed if i["alertname"] == lp.alertname and i["id"] != first), None
            )
            await asyncio.sleep(0.2)
        view = await lp.wait(second, lambda v: v["stage"] == "awaiting_decision")
        proposal = view["proposal"]
        assert proposal["playbook"] == name and proposal["kind"] == "playbook", view["timeline"]
        assert "playbook_matched" in kinds(view)
        resp = await lp.http.post(
            f"/api/v1/incidents/{second}/decision",
            json={"decision": "approve", "plan_digest": proposal["digest"]},
        )
        assert resp.status_code == 200, resp.text
        view = await lp.wait(second, lambda v: v["stage"] == "closed")
    assert view["outcome"] == "healed_after_approval", view["remediations"]
    assert view["remediations"][-1]["playbook"] == name and lp.pool_size() == 20
    fix = next(c for c in lp.remote_commits() if f"Selfheal-Incident: {second}" in c.message)
    assert fix.parents[0].hexsha == second_bad
    assert "playbook_drafted" not in kinds(view)  # a playbook's own run teaches nothing new

    s = await scrape_api(lp.http)
    assert value(s, "selfheal_playbook_drafts_total", status="proposed") == 1.0
    assert value(s, "selfheal_playbook_drafts_accepted_total") == 1.0
    assert value(s, "selfheal_escalations_total", outcome="healed_after_approval") == 2.0

    # Both incidents (runs of the alert group's workflow) replay against today's code; round 1's
    # history is the one to commit for playbook-draft-v1 (SELFHEAL_RECORD_HISTORY=incident-v8-…).
    replayer = Replayer(workflows=[IncidentWorkflow], data_converter=pydantic_data_converter)
    group = first.rsplit("-", 1)[0]
    runs = [r async for r in client.list_workflows(f"WorkflowId = 'incident-{group}'")]
    assert len(runs) == 2
    for run in sorted(runs, key=lambda r: r.start_time):
        history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        await replayer.replay_workflow(history)
        record = os.environ.get("SELFHEAL_RECORD_HISTORY", "")
        if record.startswith("incident-") and "draft_playbook" in history.to_json():
            target = Path(__file__).parents[1] / "workflows" / "histories" / f"{record}.json"
            assert not target.exists(), f"{target} exists: committed histories are never overwritten"
            target.write_text(history.to_json())
