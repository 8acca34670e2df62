"""The trials: a seeded schedule, each trial run with its fault, and what is checked afterwards.

A trial is one alert group (its own service): a known pattern (`heal`: the playbook raises the
pool, pushes, and Prometheus verifies) or an unknown one (`escalate`: no playbook matches). One
fault hits at a random moment after the alert starts firing. Faults never overlap each other;
trials do (`parallel`), so a process fault also hits the other trials in flight.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.chaos.world import PER_PLAYBOOK, World

#: Fault kinds, each with how long it lasts (seconds, drawn uniformly).
KINDS: dict[str, tuple[float, float]] = {
    "kill worker": (0.5, 3.0),
    "kill api": (0.5, 3.0),
    "kill temporal": (0.5, 3.0),
    "prometheus down": (2.0, 10.0),
    "alertmanager down": (2.0, 10.0),
    "tracker 5xx": (2.0, 10.0),
    "tracker timeouts": (2.0, 10.0),
    "git refuses pushes": (2.0, 10.0),
}
#: When the fault hits, seconds after the alert starts firing: spread over a trial's usual length.
MOMENT = {"heal": (0.0, 12.0), "escalate": (0.0, 6.0)}
FINISHED = ("closed", "awaiting_decision")


@dataclass(frozen=True)
class Plan:
    index: int
    kind: str
    scenario: str  # "heal" or "escalate"
    service: str
    moment: float
    downtime: float

    @property
    def shard(self) -> str:
        return str(self.index // PER_PLAYBOOK)

    def describe(self) -> str:
        return (
            f"trial {self.index} ({self.scenario}, {self.service}): {self.kind} for {self.downtime:.1f}s"
            f" at {self.moment:.1f}s"
        )


def schedule(seed: int, trials: int, kinds: list[str] | None = None) -> list[Plan]:
    """The same seed gives the same trials: kinds dealt round-robin in a shuffled order (so a
    short run still covers several), scenario, moment and downtime drawn from the seed."""
    rng = random.Random(seed)
    names = list(kinds or KINDS)
    plans: list[Plan] = []
    deck: list[str] = []
    for i in range(trials):
        if not deck:
            deck = rng.sample(names, len(names))
        kind = deck.pop(0)
        scenario = "heal" if rng.random() < 0.6 else "escalate"
        lo, hi = MOMENT[scenario]
        d_lo, d_hi = KINDS[kind]
        plans.append(
            Plan(
                index=i,
                kind=kind,
                scenario=scenario,
                service=f"svc-{i:03d}",
                moment=round(rng.uniform(lo, hi), 2),
                downtime=round(rng.uniform(d_lo, d_hi), 2),
            )
        )
    return plans


@dataclass
class Result:
    plan: Plan
    #: Seconds from the alert's start until the fault actually hit (faults wait for each other).
    fault_at: float | None = None
    finished_s: float | None = None
    stage: str = ""
    outcome: str = ""
    incidents: list[str] = field(default_factory=list)
    #: Why a known pattern did not heal (escalated instead): legitimate under faults, but reported.
    why: str = ""
    #: Monotonic span of the trial and of its fault; other trials' faults inside the span hit it too.
    span: tuple[float, float] = (0.0, 0.0)
    fault_span: tuple[float, float] | None = None
    also_hit_by: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)

    @property
    def stuck(self) -> bool:
        return self.finished_s is None


def fault(world: World, plan: Plan) -> Callable[[], Awaitable[None]]:
    d = plan.downtime
    return {
        "kill worker": lambda: world.kill_and_restart("worker", d),
        "kill api": lambda: world.kill_and_restart("api", d),
        "kill temporal": lambda: world.kill_and_restart("temporal", d),
        "prometheus down": lambda: world.server_down("prometheus", d),
        "alertmanager down": lambda: world.server_down("alertmanager", d),
        "tracker 5xx": lambda: world.tracker_down(d, stall=False),
        "tracker timeouts": lambda: world.tracker_down(d, stall=True),
        "git refuses pushes": lambda: world.pushes_refused(d),
    }[plan.kind]


async def incidents_of(http: httpx.AsyncClient, service: str) -> list[dict[str, Any]] | None:
    """The service's incidents as the list shows them; None when the API cannot answer now."""
    try:
        resp = await http.get("/api/v1/incidents", params={"service": service, "limit": 100})
    except httpx.HTTPError:
        return None
    if resp.status_code != 200:
        return None
    rows: list[dict[str, Any]] = resp.json()["incidents"]
    return rows


async def run_trial(
    world: World, http: httpx.AsyncClient, plan: Plan, faults: asyncio.Lock, bound: float
) -> Result:
    result = Result(plan)
    t0 = time.monotonic()
    if plan.scenario == "heal":
        world.target.heal_trial(plan.service, plan.shard)
    else:
        world.target.escalate_trial(plan.service)

    async def hit() -> None:
        await asyncio.sleep(plan.moment)
        async with faults:
            began = time.monotonic()
            result.fault_at = round(began - t0, 2)
            try:
                await fault(world, plan)()
            finally:
                result.fault_span = (began, time.monotonic())

    injected = asyncio.create_task(hit())
    try:
        while time.monotonic() - t0 < bound:
            rows = await incidents_of(http, plan.service)
            if rows:
                result.stage = rows[0]["stage"]
            if rows and all(r["stage"] in FINISHED for r in rows) and injected.done():
                result.finished_s = round(time.monotonic() - t0, 1)
                break
            await asyncio.sleep(0.5)
    finally:
        await injected
        world.target.end_trial(plan.service)
        result.span = (t0, time.monotonic())
    return result


async def run_all(
    world: World,
    http: httpx.AsyncClient,
    plans: list[Plan],
    *,
    parallel: int,
    bound: float,
    progress: Callable[[Result], None],
) -> list[Result]:
    lanes = asyncio.Semaphore(parallel)
    faults = asyncio.Lock()

    async def one(plan: Plan) -> Result:
        async with lanes:
            result = await run_trial(world, http, plan, faults, bound)
        progress(result)
        return result

    tasks = []
    for plan in plans:
        tasks.append(asyncio.create_task(one(plan)))
        await asyncio.sleep(0)  # start in order
    results = list(await asyncio.gather(*tasks))
    for r in results:
        for other in results:
            fs = other.fault_span
            if other is not r and fs is not None and fs[0] < r.span[1] and fs[1] > r.span[0]:
                r.also_hit_by.append(f"{other.plan.kind} (trial {other.plan.index})")
    return results


async def check(world: World, http: httpx.AsyncClient, results: list[Result]) -> None:
    """After every trial: count what the loop did per alert group and per incident."""
    tickets, repeated_comments = world.tickets()
    fixes, deploys, rollbacks = world.remote.side_effects()
    accepted = world.recorder.accepted()
    delivered: dict[str, set[str]] = {}
    for d in world.recorder.deliveries:
        if d.accepted and d.incident_id:
            delivered.setdefault(d.service, set()).add(d.incident_id)
    for r in results:
        rows = await _retrying(lambda r=r: incidents_of(http, r.plan.service))
        r.incidents = sorted(row["id"] for row in rows)
        if not r.incidents:
            r.lost.append("the alert group never became an incident")
        if len(r.incidents) > 1:
            r.duplicates.append(f"{len(r.incidents)} incidents for one alert group: {', '.join(r.incidents)}")
        for unknown in sorted(delivered.get(r.plan.service, set()) - set(r.incidents)):
            r.lost.append(f"notifications accepted for {unknown}, which the incident list lacks")
        for incident in r.incidents:
            view = await _retrying(lambda i=incident: _view(http, i))
            r.stage, r.outcome = view["stage"], str(view.get("outcome") or "")
            if r.plan.scenario == "heal" and r.outcome != "healed":
                r.why = not_healed_because(view)
            n_tickets = tickets.get(incident, 0)
            if n_tickets == 0:
                r.lost.append(f"{incident}: no ticket")
            elif n_tickets > 1:
                r.duplicates.append(f"{incident}: {n_tickets} tickets")
            if repeated_comments.get(incident):
                r.duplicates.append(f"{incident}: {repeated_comments[incident]} repeated ticket comments")
            for what, counts in (
                ("fix commits", fixes),
                ("fix deploys", deploys),
                ("rollback deploys", rollbacks),
            ):
                if counts.get(incident, 0) > 1:
                    r.duplicates.append(f"{incident}: {counts[incident]} {what}")
            if view.get("outcome") == "healed" and not (fixes.get(incident) and deploys.get(incident)):
                r.lost.append(f"{incident}: healed without its fix commit and deploy on the remote")
            missing = accepted.get(incident, 0) - int(view["notifications"])
            if missing > 0:
                r.lost.append(
                    f"{incident}: {missing} of {accepted[incident]} accepted notifications missing"
                    f" (the incident counts {view['notifications']})"
                )


def not_healed_because(view: dict[str, Any]) -> str:
    """The last remediation's outcome and reason, else the last escalation-like event."""
    if view.get("remediations"):
        last = view["remediations"][-1]
        text = f"remediation {last['outcome']}: {last['reason']}"
    else:
        events = [e for e in view["timeline"] if e["kind"] not in ("alerts_changed", "resolved", "refired")]
        text = f"{events[-1]['kind']}: {events[-1]['message']}" if events else "no event"
    return " ".join(text.split())[:240]


async def _view(http: httpx.AsyncClient, incident_id: str) -> dict[str, Any] | None:
    try:
        resp = await http.get(f"/api/v1/incidents/{incident_id}")
    except httpx.HTTPError:
        return None
    view: dict[str, Any] | None = resp.json() if resp.status_code == 200 else None
    return view


async def _retrying(fetch: Callable[[], Awaitable[Any]], within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = await fetch()
        if got is not None:
            return got
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not answer within 60s after the trials")
        await asyncio.sleep(0.5)


@dataclass
class Row:
    kind: str
    trials: int = 0
    healed: int = 0
    escalated: int = 0
    duplicates: int = 0
    lost: int = 0
    stuck: int = 0
    times: list[float] = field(default_factory=list)

    def add(self, r: Result) -> None:
        self.trials += 1
        self.healed += r.outcome == "healed"
        self.escalated += r.outcome != "healed" and not r.stuck
        self.duplicates += len(r.duplicates)
        self.lost += len(r.lost)
        self.stuck += r.stuck
        if r.finished_s is not None:
            self.times.append(r.finished_s)

    def cells(self) -> list[Any]:
        median = f"{statistics.median(self.times):.1f}" if self.times else "-"
        return [
            self.kind,
            self.trials,
            self.healed,
            self.escalated,
            self.duplicates,
            self.lost,
            self.stuck,
            median,
        ]


def by_kind(results: list[Result]) -> list[Row]:
    rows: dict[str, Row] = {}
    for r in results:
        rows.setdefault(r.plan.kind, Row(r.plan.kind)).add(r)
    total = Row("all")
    for r in results:
        total.add(r)
    return [*sorted(rows.values(), key=lambda row: row.kind), total]
