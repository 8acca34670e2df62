"""Webhook ingest: notifications/s and latency with durable acceptance, against bare signal-with-start.

The API answers 2xx only after Temporal recorded the notification (signal-with-start), so its
ceiling is the Temporal server's own signal-with-start rate. We measure both against the SAME
server in the same run: the bare rate with the Temporal Python client (same workflow input, signal
payload, id policies, memo and search attributes, on a task queue no worker polls), then the API
path (httpx async clients → `selfheal api` → Temporal, a `selfheal worker` running). The headline
is their ratio per concurrency. Afterwards every incident's view must count exactly the
notifications that were accepted for its group: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from bench.common import (
    BenchStack,
    alert,
    base_parser,
    console,
    elapsed,
    embedded_stack,
    fail,
    machine_facts,
    notification,
    now_iso,
    percentile,
    print_machine,
    print_table,
    write_result,
)
from selfheal import identity
from selfheal.incidents import policy_snapshot
from selfheal.models import AlertmanagerWebhook, Notification
from selfheal.settings import TASK_QUEUE, TemporalSettings, load_settings
from selfheal.temporal import connect
from workflows.incident import IncidentInput

NAME = "ingest"
UNPOLLED_QUEUE = "bench-bare-unpolled"


def group_payloads(tag: str, groups: int) -> list[dict[str, Any]]:
    """One small alert group per incident (an Alertmanager notification of one firing alert)."""
    out = []
    for g in range(groups):
        labels = {"service": f"svc-{g}", "severity": "warning", "instance": f"10.0.{g // 250}.{g % 250}:8080"}
        out.append(
            notification(
                f"{tag}-{g}", "BenchIngest", [alert("BenchIngest", f"fp{tag}{g}", labels, now_iso())]
            )
        )
    return out


def summarize(latencies: list[float], count: int, seconds: float) -> dict[str, Any]:
    return {
        "notifications": count,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2) if latencies else 0.0,
    }


async def bare_level(
    client: Any, tag: str, senders: int, total: int, groups: int, *, polled: bool = False
) -> dict[str, Any]:
    """Signal-with-start straight from the Temporal client: the ceiling for durable acceptance.

    Unpolled (the headline's denominator): no worker runs what is started, so this is the server's
    bare rate. Polled: the real IncidentWorkflow on the worker's queue, so the server and the worker
    do the same downstream work as for the API path and only the API's own cost differs.
    """
    settings = load_settings(None, env="dev")
    workflow, queue = (
        ("IncidentWorkflow", TASK_QUEUE) if polled else ("BenchBareSignalWithStart", UNPOLLED_QUEUE)
    )
    prefix = f"bench-{'polled' if polled else 'bare'}-{tag}"
    bodies = [AlertmanagerWebhook.model_validate(p) for p in group_payloads(tag, groups)]
    next_index = iter(range(total))
    latencies: list[float] = []
    per_group: Counter[int] = Counter()

    async def sender() -> None:
        for i in next_index:
            g = i % groups
            gid = identity.group_id(bodies[g].receiver, bodies[g].groupKey)
            new_id = identity.new_incident_id(gid)
            t0 = time.perf_counter()
            await client.start_workflow(
                workflow,
                IncidentInput(incident_id=new_id, group_id=gid, policy=policy_snapshot(settings)),
                id=f"{prefix}-{g}",
                task_queue=queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                start_signal="notify",
                start_signal_args=[Notification(received_at=datetime.now(UTC), notification=bodies[g])],
                memo={"incident_id": new_id},
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(identity.SA_INCIDENT_ID, new_id),
                        SearchAttributePair(identity.SA_STAGE, "received"),
                        SearchAttributePair(identity.SA_STATUS, "firing"),
                    ]
                ),
                rpc_timeout=timedelta(seconds=30),
            )
            latencies.append(time.perf_counter() - t0)
            per_group[g] += 1

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    seconds = elapsed(start)
    # Nothing lost on the bare path either: each workflow's history holds one signal per call. Signals
    # that arrive while a worker runs a workflow task are buffered until it completes: poll a while.
    signalled = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        signalled = 0
        for g in range(groups):
            history = await client.get_workflow_handle(f"{prefix}-{g}").fetch_history()
            signalled += sum(
                1 for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")
            )
        if signalled >= total:
            break
        await asyncio.sleep(0.5)
    return {**summarize(latencies, len(latencies), seconds), "signals_in_histories": signalled}


async def api_level(stack: BenchStack, tag: str, senders: int, total: int, groups: int) -> dict[str, Any]:
    """The same notifications through `POST /api/v1/alerts`, one httpx async client per sender."""
    bodies = [json.dumps(p).encode() for p in group_payloads(tag, groups)]
    next_index = iter(range(total))
    latencies: list[float] = []
    accepted: Counter[int] = Counter()
    incidents: dict[int, set[str]] = {g: set() for g in range(groups)}
    errors: Counter[str] = Counter()
    gave_up = 0
    headers = {**stack.headers, "Content-Type": "application/json"}

    async def sender() -> None:
        nonlocal gave_up
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as http:
            for i in next_index:
                g = i % groups
                t0 = time.perf_counter()
                for _attempt in range(5):  # like Alertmanager, retry a 5xx or a broken connection
                    try:
                        resp = await http.post("/api/v1/alerts", content=bodies[g])
                    except httpx.HTTPError as err:
                        errors[type(err).__name__] += 1
                        continue
                    if resp.status_code == 202:
                        latencies.append(time.perf_counter() - t0)
                        accepted[g] += 1
                        incidents[g].add(resp.json()["incident_id"])
                        break
                    errors[str(resp.status_code)] += 1
                else:
                    gave_up += 1

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    seconds = elapsed(start)
    stack.check_alive()

    # Verify: every incident's view counts exactly the notifications accepted for its group.
    absorb_start = time.perf_counter()
    counted: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=stack.headers, timeout=60) as http:
        deadline = time.monotonic() + max(120.0, total / 5)
        pending = {g for g in range(groups) if len(incidents[g]) == 1}
        while pending and time.monotonic() < deadline:
            for g in sorted(pending):
                (incident_id,) = incidents[g]
                resp = await http.get(f"/api/v1/incidents/{incident_id}")
                if resp.status_code == 200:
                    counted[g] = int(resp.json()["notifications"])
                    if counted[g] >= accepted[g]:
                        pending.discard(g)
            if pending:
                await asyncio.sleep(0.2)
    absorb_seconds = elapsed(absorb_start)
    mismatched = {g: (accepted[g], counted.get(g)) for g in range(groups) if counted.get(g) != accepted[g]}
    split = {g: sorted(ids) for g, ids in incidents.items() if len(ids) != 1}
    return {
        **summarize(latencies, len(latencies), seconds),
        "accepted": sum(accepted.values()),
        "counted_in_views": sum(counted.values()),
        "absorbed_within_s": round(absorb_seconds, 2),
        "errors": dict(errors),
        "gave_up": gave_up,
        "groups_mismatched": {str(k): v for k, v in mismatched.items()},
        "groups_not_one_incident": {str(k): v for k, v in split.items()},
    }


async def run(args: Any) -> int:
    levels = [int(x) for x in args.concurrency.split(",")]
    machine = machine_facts()
    rows: list[list[Any]] = []
    results: list[dict[str, Any]] = []
    problems: list[str] = []
    with embedded_stack(keep=args.keep) as stack:
        client = await connect(TemporalSettings(address=stack.temporal_address))
        for senders in levels:
            tag = f"c{senders}-{int(time.time())}"
            console.print(f"concurrency {senders}: bare signal-with-start…")
            bare = await bare_level(client, tag, senders, args.notifications, args.groups)
            console.print(f"concurrency {senders}: bare signal-with-start, worker running the workflows…")
            polled = await bare_level(client, tag, senders, args.notifications, args.groups, polled=True)
            console.print(f"concurrency {senders}: API…")
            api = await api_level(stack, tag, senders, args.notifications, args.groups)
            ratio = api["per_second"] / bare["per_second"] if bare["per_second"] else 0.0
            ratio_polled = api["per_second"] / polled["per_second"] if polled["per_second"] else 0.0
            results.append(
                {
                    "senders": senders,
                    "bare": bare,
                    "bare_with_worker": polled,
                    "api": api,
                    "ratio": round(ratio, 3),
                    "ratio_vs_bare_with_worker": round(ratio_polled, 3),
                }
            )
            rows.append(
                [
                    senders,
                    bare["per_second"],
                    polled["per_second"],
                    api["per_second"],
                    f"{ratio:.0%}",
                    f"{ratio_polled:.0%}",
                    bare["p50_ms"],
                    bare["p99_ms"],
                    polled["p50_ms"],
                    polled["p99_ms"],
                    api["p50_ms"],
                    api["p99_ms"],
                    f"{api['counted_in_views']}/{api['accepted']}",
                ]
            )
            for label, series in (("bare", bare), ("bare with worker", polled)):
                if series["signals_in_histories"] != args.notifications:
                    problems.append(f"{label} c={senders}: {series['signals_in_histories']} signals recorded")
            if api["accepted"] != args.notifications or api["gave_up"]:
                problems.append(f"api c={senders}: {api['accepted']}/{args.notifications} accepted")
            if api["groups_mismatched"] or api["groups_not_one_incident"]:
                problems.append(
                    f"api c={senders}: lost or doubled notifications {api['groups_mismatched']},"
                    f" groups split {api['groups_not_one_incident']}"
                )
    print_table(
        f"Webhook ingest: {args.notifications} notifications over {args.groups} groups per level",
        [
            "senders",
            "bare/s",
            "bare+worker/s",
            "API/s",
            "API÷bare",
            "API÷bare+worker",
            "bare p50 ms",
            "bare p99 ms",
            "bare+worker p50",
            "bare+worker p99",
            "API p50 ms",
            "API p99 ms",
            "counted/accepted",
        ],
        rows,
    )
    print_machine(machine)
    for p in problems:
        fail(p)
    headline = {f"api_over_bare_c{r['senders']}": r["ratio"] for r in results}
    headline.update(
        {f"api_over_bare_with_worker_c{r['senders']}": r["ratio_vs_bare_with_worker"] for r in results}
    )
    headline.update({f"api_per_s_c{r['senders']}": r["api"]["per_second"] for r in results})
    write_result(
        NAME,
        params={
            "notifications": args.notifications,
            "groups": args.groups,
            "concurrency": levels,
            "quick": args.quick,
        },
        results=results,
        headline=headline,
        checks={"no_loss": not problems, "problems": problems},
        machine=machine,
        out=args.out,
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--notifications", type=int, default=1000, help="notifications per concurrency level")
    parser.add_argument("--groups", type=int, default=20, help="alert groups (incidents) per level")
    parser.add_argument("--concurrency", default="1,10,100", help="comma-separated sender counts")
    args = parser.parse_args(argv)
    if args.quick:
        args.notifications, args.groups, args.concurrency = 12, 3, "1,4"
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
