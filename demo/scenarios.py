"""The demo's faults and the runner that injects one, follows the incident and measures the loop.

Each fault is a commit a developer pushes and deploys. The runner never tells selfheal anything:
Prometheus notices, Alertmanager calls the webhook, and the runner only watches the public API
(and, for the novel fault, decides like the on-call would: it approves the plan of the proposed
revert, pinned by its digest, and selfheal runs it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from demo.configrepo import ConfigRepo
from demo.stack import DemoStack


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    alertname: str
    #: "healed" (a playbook fixes it with no human) or "escalated" (novel: a human decides; the
    #: approved proposal then heals it).
    expect: str
    playbook: str | None
    file: str  # "config" or "flags"
    change_key: str
    value: object
    message: str

    def inject(self, repo: ConfigRepo) -> str:
        path = repo.config_path if self.file == "config" else repo.flags_path
        return repo.commit_change(path, self.change_key, self.value, self.message)


SCENARIOS: dict[str, Scenario] = {
    s.key: s
    for s in (
        Scenario(
            "bad-config",
            "bad config commit (payment timeout 5ms)",
            "HighErrorRatio",
            "healed",
            "shop-revert-bad-config",
            "config",
            "payments.timeout_ms",
            5,
            "payments: tighten the provider timeout to 5ms",
        ),
        Scenario(
            "pool-regression",
            "pool-size regression (10 → 2)",
            "DatabaseConnectionPoolExhausted",
            "healed",
            "shop-db-pool-raise",
            "config",
            "db.pool.size",
            2,
            "db: shrink the connection pool to 2 to save database connections",
        ),
        Scenario(
            "feature-flag",
            "feature flag breaks /api/recommendations",
            "FeatureFlagErrorRatioHigh",
            "healed",
            "shop-feature-flag-disable",
            "flags",
            "flags.new_recommendations.enabled",
            True,
            "flags: launch new_recommendations",
        ),
        Scenario(
            "novel",
            "novel: product pages 100x bigger (no playbook)",
            "HighLatency",
            "escalated",
            None,
            "config",
            "products.page_size",
            2000,
            "products: show 2000 items per page",
        ),
    )
}
#: The demo's order: known faults first, so the novel one finds them as similar past incidents.
ORDER = ["bad-config", "pool-regression", "feature-flag", "novel"]


class ScenarioFailed(Exception):
    pass


@dataclass
class ScenarioResult:
    scenario: str
    title: str
    expect: str
    incident_id: str = ""
    ticket_key: str = ""
    outcome: str = ""
    ok: bool = False
    reason: str = ""
    fault_sha: str = ""
    fault_at: datetime | None = None
    prometheus_firing_at: datetime | None = None
    #: When selfheal received the webhook (the incident's first timeline event).
    alert_at: datetime | None = None
    deployed_at: datetime | None = None
    verified_at: datetime | None = None
    escalated_at: datetime | None = None
    closed_at: datetime | None = None
    fix_commits: list[str] = field(default_factory=list)
    fix_deploys: int = 0

    def seconds(self, a: str, b: str) -> float | None:
        start: datetime | None = getattr(self, a)
        end: datetime | None = getattr(self, b)
        if start is None or end is None:
            return None
        return round((end - start).total_seconds(), 2)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, datetime):
                data[key] = value.isoformat()
        data["fault_to_alert_s"] = self.seconds("fault_at", "alert_at")
        data["alert_to_deployed_s"] = self.seconds("alert_at", "deployed_at")
        data["alert_to_verified_s"] = self.seconds("alert_at", "verified_at")
        data["fault_to_verified_s"] = self.seconds("fault_at", "verified_at")
        return data


Event = Callable[[float, str, str], None]
Decide = Callable[[dict[str, Any]], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _poll(what: str, fn: Callable[[], Any], timeout: float, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise ScenarioFailed(f"{what}: not reached within {timeout:.0f}s")


class Runner:
    """Runs scenarios on a started `DemoStack`; `on_event(seconds_since_fault, kind, text)` gets
    the live timeline."""

    def __init__(self, stack: DemoStack, on_event: Event | None = None) -> None:
        self.stack = stack
        self.on_event = on_event or (lambda _s, _k, _t: None)

    def _incidents(self) -> list[dict[str, Any]]:
        with self.stack.api() as api:
            resp = api.get("/api/v1/incidents")
            resp.raise_for_status()
            incidents: list[dict[str, Any]] = resp.json()["incidents"]
            return incidents

    def view(self, incident_id: str) -> dict[str, Any]:
        with self.stack.api() as api:
            resp = api.get(f"/api/v1/incidents/{incident_id}")
            resp.raise_for_status()
            view: dict[str, Any] = resp.json()
            return view

    def ticket(self, key: str) -> dict[str, Any]:
        with self.stack.api() as api:
            resp = api.get(f"/api/v1/tickets/{key}")
            resp.raise_for_status()
            ticket: dict[str, Any] = resp.json()
            return ticket

    def decide(self, incident_id: str, decision: str, comment: str, plan_digest: str | None = None) -> None:
        """Decide as the demo's approver (the decider is whoever the API token authenticates);
        `plan_digest` pins the plan it was shown: a plan that changed since would be refused."""
        body: dict[str, str] = {"decision": decision, "comment": comment}
        if plan_digest:
            body["plan_digest"] = plan_digest
        with self.stack.api() as api:
            resp = api.post(f"/api/v1/incidents/{incident_id}/decision", json=body)
            if resp.status_code != 200:
                raise ScenarioFailed(f"decision answered {resp.status_code}: {resp.text[:300]}")

    def run(self, scenario: Scenario, decide: Decide | None = None, timeout: float = 120) -> ScenarioResult:
        """Inject the fault, follow the incident to its end, wait for the shop to recover."""
        res = ScenarioResult(scenario.key, scenario.title, scenario.expect)
        try:
            self._run(scenario, res, decide, timeout)
        except (ScenarioFailed, OSError, RuntimeError, httpx.HTTPError) as err:
            res.ok = False
            res.reason = str(err)
            self.on_event(self._since(res), "failed", str(err))
        return res

    def _since(self, res: ScenarioResult, at: datetime | None = None) -> float:
        if res.fault_at is None:
            return 0.0
        return ((at or _now()) - res.fault_at).total_seconds()

    def _run(self, scenario: Scenario, res: ScenarioResult, decide: Decide | None, timeout: float) -> None:
        stack = self.stack
        before = {i["id"] for i in self._incidents()}
        res.fault_at = _now()
        res.fault_sha = scenario.inject(stack.repo)
        stack.reload_shop("dana-cd")
        self.on_event(0.0, "fault", f"{scenario.message} ({res.fault_sha[:10]}) pushed and deployed")

        def new_incident() -> str | None:
            if res.prometheus_firing_at is None and stack.firing(scenario.alertname):
                res.prometheus_firing_at = _now()
                self.on_event(self._since(res), "prometheus", f"{scenario.alertname} firing in Prometheus")
            for inc in self._incidents():
                if inc["id"] not in before and inc["alertname"] == scenario.alertname:
                    return str(inc["id"])
            return None

        incident_id = _poll(f"an incident for {scenario.alertname}", new_incident, 60)
        res.incident_id = incident_id
        seen = 0
        deadline = time.monotonic() + timeout
        decided = False
        while True:
            view = self.view(incident_id)
            for event in view["timeline"][seen:]:
                at = _parse(event["at"])
                self._note(res, event, at)
                self.on_event(self._since(res, at), event["kind"], event["message"])
            seen = len(view["timeline"])
            if view["ticket"]:
                res.ticket_key = view["ticket"]["key"]
            if view["stage"] == "closed":
                break
            if view["stage"] == "awaiting_decision" and not decided:
                if scenario.expect == "healed":
                    raise ScenarioFailed(f"escalated instead of healing: {self._why(view)}")
                if decide is None:
                    raise ScenarioFailed("awaiting a decision, and no one to decide")
                decide(view)
                decided = True
            if time.monotonic() > deadline:
                raise ScenarioFailed(f"incident still {view['stage']} after {timeout:.0f}s")
            time.sleep(0.3)
        res.outcome = view["outcome"] or ""
        res.closed_at = _parse(view["closed_at"]) if view.get("closed_at") else _now()
        # A novel fault heals once a human approves the proposed fix (selfheal runs it).
        expected = ("healed",) if scenario.expect == "healed" else ("healed_after_approval",)
        marker = f"Selfheal-Incident: {incident_id}"
        res.fix_commits = [sha for sha, body in stack.repo.log() if marker in body]
        res.fix_deploys = sum(1 for d in stack.deploys() if d["sha"] in res.fix_commits)
        if res.outcome not in ("healed", "healed_after_approval"):
            self._human_fix(scenario, res)  # rejected (--interactive): the on-call reverts by hand
        self._wait_recovered(scenario, res)
        others = [
            f"{i['alertname']} ({i['id']})"
            for i in self._incidents()
            if i["id"] not in before | {incident_id}
        ]
        res.ok = res.outcome in expected and not others
        if res.outcome not in expected:
            res.reason = f"outcome {res.outcome!r}, expected {' or '.join(expected)}: {self._why(view)}"
        elif others:
            res.reason = f"the fault opened more than one incident: also {', '.join(others)}"

    def _note(self, res: ScenarioResult, event: dict[str, Any], at: datetime) -> None:
        kind, message = event["kind"], event["message"]
        if kind == "received" and res.alert_at is None:
            res.alert_at = at
        elif kind == "step" and message.startswith("[deploy]") and ": OK" in message:
            res.deployed_at = at
        elif kind == "remediation_healed":
            res.verified_at = at
        elif kind == "escalated" and res.escalated_at is None:
            res.escalated_at = at

    @staticmethod
    def _why(view: dict[str, Any]) -> str:
        if view.get("remediations"):
            last = view["remediations"][-1]
            return f"{last['playbook']} {last['outcome']}: {last['reason']}"
        tail = [e["message"] for e in view["timeline"][-3:]]
        return "; ".join(tail)

    def _human_fix(self, scenario: Scenario, res: ScenarioResult) -> None:
        """The on-call applies the investigation's proposal by hand: revert the suspect commit."""
        sha = self.stack.repo.revert(
            res.fault_sha, f'Revert "{scenario.message}" (incident {res.incident_id})'
        )
        self.stack.reload_shop("oncall")
        self.on_event(self._since(res), "human_fix", f"on-call reverted {res.fault_sha[:10]} as {sha[:10]}")

    def _wait_recovered(self, scenario: Scenario, res: ScenarioResult, timeout: float = 60) -> None:
        """Until the alert is gone from Prometheus and Alertmanager: the next fault starts clean."""

        def clear() -> bool:
            if self.stack.firing(scenario.alertname):
                return False
            return not any(a["labels"].get("alertname") == scenario.alertname for a in self.stack.am_active())

        _poll(f"{scenario.alertname} to resolve", clear, timeout)
        self.on_event(self._since(res), "recovered", f"{scenario.alertname} resolved; the shop is healthy")
