"""Webhook ingest with durable acceptance, against the bare signal-with-start rate of the same server.

    .venv/bin/python -m bench.ingest [--quick] [--counts 300 1000 2000] [--groups 50]

For 1, 10 and 100 concurrent senders (each an httpx async client) we post Alertmanager
notifications to a real `selfheal api` process (answered 2xx only after signal-with-start) while a
real `selfheal worker` runs the incidents; then, on the same Temporal dev server, we issue the same
signal-with-start calls directly with the Temporal Python client (same workflow type, input and
notification payloads; a task queue no worker polls). The headline is API rate / bare rate. A third
series sends the bare calls to the worker's queue, so the server and worker do the same downstream
work as for the API: API ÷ that rate is what the API process itself costs.
Afterwards every incident's `notifications` count (its view, via the API) must equal what was
posted to it: nothing lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from bench import common
from connectors.temporal import TemporalSettings, connect
from models import ids
from models.incident import AlertmanagerWebhook, Notification
from models.incident_state import IncidentInput
from selfheal.incidents import policy_snapshot
from selfheal.settings import load_settings
from workflows.incident import IncidentWorkflow

NAME = "ingest"
SENDERS = [1, 10, 100]


@dataclass
class Level:
    senders: int
    count: int
    groups: list[str]
    payloads: list[dict[str, Any]] = field(default_factory=list)


def make_level(senders: int, count: int, n_groups: int, run: str) -> Level:
    """`count` notifications spread round-robin over `n_groups` groups of 3 alerts each."""
    groups = [
        f'{{}}:{{alertname="BenchIngest",run="{run}",senders="{senders}",g="{g}"}}' for g in range(n_groups)
    ]
    level = Level(senders, count, groups)
    starts = common.now_iso()
    for i in range(count):
        g = i % n_groups
        alerts = [
            common.alert(
                {
                    "alertname": "BenchIngest",
                    "service": f"ingest-{g}",
                    "instance": f"10.0.{g}.{k}:8080",
                    "severity": "warning",
                },
                hashlib.sha256(f"{run}/{senders}/{g}/{k}".encode()).hexdigest()[:16],
                starts,
            )
            for k in range(3)
        ]
        level.payloads.append(
            common.notification(groups[g], alerts, {"alertname": "BenchIngest", "g": str(g)})
        )
    return level


async def run_senders(senders: int, jobs: list[Any], call: Any) -> tuple[float, list[float], list[Any]]:
    """Run `call(sender_state, job)` for every job with `senders` concurrent workers."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    latencies: list[float] = []
    results: list[Any] = []

    async def sender() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            began = time.perf_counter()
            results.append(await call(job))
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return time.perf_counter() - began, latencies, results


async def api_phase(stack: common.Stack, level: Level) -> dict[str, Any]:
    clients = [stack.http(limits=httpx.Limits(max_connections=1)) for _ in range(level.senders)]
    free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    for c in clients:
        free.put_nowait(c)

    async def post(payload: dict[str, Any]) -> tuple[str, int, str | None]:
        client = await free.get()
        try:
            resp = await client.post("/api/v1/alerts", json=payload)
        except httpx.HTTPError as err:
            return payload["groupKey"], 0, type(err).__name__
        finally:
            free.put_nowait(client)
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        return payload["groupKey"], resp.status_code, body.get("incident_id")

    try:
        elapsed, lat, results = await run_senders(level.senders, level.payloads, post)
    finally:
        for c in clients:
            await c.aclose()
    accepted: dict[str, int] = {}
    ids: dict[str, set[str]] = {}
    errors = 0
    for group, status, incident in results:
        if 200 <= status < 300 and incident:
            accepted[group] = accepted.get(group, 0) + 1
            ids.setdefault(group, set()).add(incident)
        else:
            errors += 1
    return {
        "elapsed": elapsed,
        "latencies": lat,
        "accepted": accepted,
        "ids": ids,
        "errors": errors,
    }


async def bare_phase(address: str, level: Level, run: str, worker_queue: str | None = None) -> dict[str, Any]:
    """The same signal-with-start calls the API makes, straight from the Temporal client.

    On a queue nobody polls (the headline's denominator) only the server's acceptance is measured.
    On the worker's queue (`worker_queue`) the server and the worker also do the downstream work the
    API path causes (a workflow task per signal, tickets, evidence), so API ÷ that rate is the cost
    of the API itself.
    """
    client = await connect(TemporalSettings(address=address))
    settings = load_settings(None, temporal={"address": address})
    policy = policy_snapshot(settings)
    queue = worker_queue or f"bench-bare-{run}"
    suffix = "/bare-worker" if worker_queue else "/bare"
    incidents: dict[str, str] = {}
    per_group: dict[str, int] = {}

    async def start(payload: dict[str, Any]) -> str | None:
        body = AlertmanagerWebhook.model_validate(payload)
        gid = ids.group_id(body.receiver, body.groupKey + suffix)
        wid = ids.workflow_id_for_group(gid)
        new_id = ids.new_incident_id(gid)
        note = Notification(received_at=datetime.now(UTC), notification=body)
        try:
            handle = await client.start_workflow(
                IncidentWorkflow.run,
                IncidentInput(incident_id=new_id, group_id=gid, policy=policy),
                id=wid,
                task_queue=queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                start_signal="notify",
                start_signal_args=[note],
                memo={"incident_id": new_id},
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(ids.SA_INCIDENT_ID, new_id),
                        SearchAttributePair(ids.SA_STAGE, "received"),
                        SearchAttributePair(ids.SA_STATUS, "firing"),
                    ]
                ),
                rpc_timeout=timedelta(seconds=settings.temporal.rpc_timeout_seconds),
            )
        except Exception as err:
            return type(err).__name__
        if worker_queue and wid not in incidents:
            memo = await (await handle.describe()).memo()
            incidents[wid] = str(memo.get("incident_id"))
        per_group[wid] = per_group.get(wid, 0) + 1
        return None if handle.result_run_id else "no run id"

    elapsed, lat, results = await run_senders(level.senders, level.payloads, start)
    expected = {wid: (incidents[wid], n) for wid, n in per_group.items() if wid in incidents}
    return {
        "elapsed": elapsed,
        "latencies": lat,
        "errors": sum(1 for r in results if r is not None),
        "error_kinds": sorted({str(r) for r in results if r is not None}),
        "expected": expected,
    }


async def absorbed(
    stack: common.Stack, expected: dict[str, tuple[str, int]], within: float
) -> dict[str, Any]:
    """Poll every incident's view until its `notifications` equals what was accepted for it."""
    seen: dict[str, int] = {}
    async with stack.http() as http:

        async def one(incident_id: str) -> int:
            resp = await http.get(f"/api/v1/incidents/{incident_id}")
            return int(resp.json()["notifications"]) if resp.status_code == 200 else -1

        async def done() -> bool:
            todo = [i for i, n in expected.values() if seen.get(i) != n]
            counts = await common.gather_limited([one(i) for i in todo], 10)
            seen.update(zip(todo, counts, strict=True))
            return all(seen.get(i) == n for i, n in expected.values())

        began = time.monotonic()
        try:
            await common.poll_until(done, within, 0.5, "all notifications absorbed")
            ok = True
        except TimeoutError:
            ok = False
        took = time.monotonic() - began
    lost = sum(max(0, n - seen.get(i, 0)) for i, n in expected.values())
    return {"ok": ok, "lost": lost, "seconds_after_last_post": round(took, 2), "incidents": len(expected)}


async def bench(args: Any) -> int:
    started = time.monotonic()
    machine = common.machine_facts()
    run = uuid.uuid4().hex[:8]
    counts = args.counts or ([10, 20, 100] if args.quick else [300, 1000, 2000])
    n_groups = args.groups or (5 if args.quick else 50)
    levels = [make_level(s, c, n_groups, run) for s, c in zip(SENDERS, counts, strict=True)]
    rows: list[list[Any]] = []
    figures: dict[str, Any] = {"levels": []}
    expected: dict[str, tuple[str, int]] = {}
    errors = 0
    bare_w_lost = 0
    split = 0
    config = {"remediation": {"include_library": False}}
    with common.running_stack(config) as stack:
        absorb: dict[str, Any] = {"ok": True, "lost": 0, "incidents": 0, "seconds_after_last_post": []}
        for level in levels:
            # Bare first, on a quiet server; then the API while the worker runs the new incidents;
            # then wait until they absorbed everything, so the next level starts quiet too.
            cpu0 = stack.cpu_seconds()
            bare = await bare_phase(stack.temporal_address, level, run)
            cpu_b = stack.cpu_seconds()
            bare_w = await bare_phase(stack.temporal_address, level, run, worker_queue=stack.task_queue)
            # Its incidents must be absorbed before the API phase, which then starts quiet too.
            got_w = await absorbed(stack, bare_w["expected"], within=60 if args.quick else 300)
            bare_w_lost += got_w["lost"] + (0 if got_w["ok"] else 1)
            cpu1 = stack.cpu_seconds()
            api = await api_phase(stack, level)
            cpu2 = stack.cpu_seconds()
            stack.assert_alive()
            errors += api["errors"] + bare["errors"]
            mine: dict[str, tuple[str, int]] = {}
            for group, ids in api["ids"].items():
                split += len(ids) - 1
                mine[group] = (sorted(ids)[0], api["accepted"][group])
            expected.update(mine)
            got = await absorbed(stack, mine, within=60 if args.quick else 300)
            absorb["ok"] = absorb["ok"] and got["ok"]
            absorb["lost"] += got["lost"]
            absorb["incidents"] += got["incidents"]
            absorb["seconds_after_last_post"].append(got["seconds_after_last_post"])
            api_rate = level.count / api["elapsed"]
            bare_rate = level.count / bare["elapsed"]
            bare_w_rate = level.count / bare_w["elapsed"]
            entry = {
                "senders": level.senders,
                "notifications": level.count,
                "groups": len(level.groups),
                "api": {
                    "per_second": round(api_rate, 1),
                    **common.latency_ms(api["latencies"]),
                    "errors": api["errors"],
                },
                "bare_signal_with_start": {
                    "per_second": round(bare_rate, 1),
                    **common.latency_ms(bare["latencies"]),
                    "errors": bare["errors"],
                },
                "bare_signal_with_start_worker_running": {
                    "per_second": round(bare_w_rate, 1),
                    **common.latency_ms(bare_w["latencies"]),
                    "errors": bare_w["errors"],
                    "error_kinds": bare_w["error_kinds"],
                    "lost": got_w["lost"],
                },
                "ratio_api_to_bare": round(api_rate / bare_rate, 3),
                "ratio_api_to_bare_worker_running": round(api_rate / bare_w_rate, 3),
                "cpu_seconds": {
                    "bare": common.cpu_delta(cpu0, cpu_b),
                    "bare_worker_running": common.cpu_delta(cpu_b, cpu1),
                    "api": common.cpu_delta(cpu1, cpu2),
                },
            }
            figures["levels"].append(entry)
            rows.append(
                [
                    level.senders,
                    level.count,
                    api_rate,
                    entry["api"]["p50_ms"],
                    entry["api"]["p99_ms"],
                    bare_rate,
                    entry["bare_signal_with_start"]["p50_ms"],
                    entry["bare_signal_with_start"]["p99_ms"],
                    f"{entry['ratio_api_to_bare']:.2f}",
                    bare_w_rate,
                    entry["bare_signal_with_start_worker_running"]["p50_ms"],
                    f"{entry['ratio_api_to_bare_worker_running']:.2f}",
                ]
            )
        stack.assert_alive()
    figures["absorption"] = absorb
    posted = sum(level.count for level in levels)
    accepted = sum(n for _, n in expected.values())
    checks: dict[str, bool] = {
        "every notification answered 2xx": errors == 0 and accepted == posted,
        "one incident per group": split == 0 and len(expected) == sum(len(lv.groups) for lv in levels),
        "no notification lost (view notifications == posted)": absorb["ok"] and absorb["lost"] == 0,
        "bare calls on the worker's queue all absorbed": bare_w_lost == 0,
    }
    common.print_table(
        "Webhook ingest (durable: 2xx after signal-with-start) vs bare signal-with-start, same server",
        [
            "senders",
            "notifications",
            "API /s",
            "API p50 ms",
            "API p99 ms",
            "bare /s",
            "bare p50 ms",
            "bare p99 ms",
            "API/bare",
            "bare+worker /s",
            "bare+worker p50 ms",
            "API/(bare+worker)",
        ],
        rows,
    )
    common.console.print(
        f"absorbed: {accepted} notifications into {absorb['incidents']} incidents,"
        f" lost {absorb['lost']}; per level, all visible"
        f" {absorb['seconds_after_last_post']} s after its last post"
    )
    common.print_checks(checks)
    common.console.print(common.machine_line(machine))
    headline = {
        f"{lv['senders']} senders": f"{lv['api']['per_second']}/s API vs"
        f" {lv['bare_signal_with_start']['per_second']}/s bare (x{lv['ratio_api_to_bare']}),"
        f" p99 {lv['api']['p99_ms']} ms"
        for lv in figures["levels"]
    }
    headline["lost"] = absorb["lost"]
    common.write_result(
        NAME,
        args.results_dir,
        quick=args.quick,
        started=started,
        params={
            "senders": SENDERS,
            "counts": counts,
            "groups_per_level": n_groups,
            "alerts_per_notification": 3,
        },
        figures=figures,
        headline=headline,
        checks=checks,
        machine=machine,
    )
    return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--counts", type=int, nargs=3, help="notifications for 1, 10 and 100 senders")
    p.add_argument("--groups", type=int, help="alert groups (incidents) per sender level")
    return common.run_async(bench(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
