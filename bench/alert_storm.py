"""An alert storm: 10,000 alerts in 50 groups, posted in bursts the way Alertmanager sends them.

    .venv/bin/python -m bench.alert_storm [--quick] [--alerts 10000] [--groups 50] [--bursts 4]

Alertmanager notifies per group, and each notification is the group's whole current snapshot:
as alerts keep arriving, every group is re-sent with more alerts each `group_interval` (burst k
carries the first k/bursts of its alerts), and a final burst repeats the full snapshot
(`repeat_interval`). Within a burst all groups are posted concurrently. Afterwards there must be
exactly one incident per group (GET /api/v1/incidents), and we time how long until every
incident's view holds all its alerts and every notification.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
import uuid
from typing import Any

import httpx

from bench import common

NAME = "alert_storm"


def group_payloads(run: str, n_alerts: int, n_groups: int, bursts: int) -> list[list[dict[str, Any]]]:
    """Per burst, one snapshot per group; the last burst repeats the full snapshot."""
    per_group = n_alerts // n_groups
    starts = common.now_iso()
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for g in range(n_groups):
        key = f'{{}}/{{severity="critical"}}:{{alertname="BenchStorm",cluster="c{g}",run="{run}"}}'
        alerts = [
            common.alert(
                {
                    "alertname": "BenchStorm",
                    "cluster": f"c{g}",
                    "service": f"storm-{g}",
                    "instance": f"10.{g // 250}.{g % 250}.{i % 250}:{9000 + i // 250}",
                    "severity": "critical",
                },
                hashlib.sha256(f"{run}/{g}/{i}".encode()).hexdigest()[:16],
                starts,
                f"node {i} of cluster c{g} unreachable",
            )
            for i in range(per_group)
        ]
        groups.append((key, alerts))
    out: list[list[dict[str, Any]]] = []
    for k in range(1, bursts + 1):
        burst = []
        for key, alerts in groups:
            upto = max(1, per_group * k // bursts)
            burst.append(common.notification(key, alerts[:upto], {"alertname": "BenchStorm"}))
        out.append(burst)
    out.append(out[-1])  # repeat_interval: the same snapshot again
    return out


async def bench(args: Any) -> int:
    started = time.monotonic()
    machine = common.machine_facts()
    n_alerts = args.alerts or (200 if args.quick else 10_000)
    n_groups = args.groups or (10 if args.quick else 50)
    bursts = args.bursts or (2 if args.quick else 4)
    per_group = n_alerts // n_groups
    run = uuid.uuid4().hex[:8]
    payloads = group_payloads(run, n_alerts, n_groups, bursts)
    sizes = [len(json.dumps(p)) for p in payloads[-1]]
    latencies: list[float] = []
    statuses: list[int] = []
    ids: dict[str, set[str]] = {}
    burst_seconds: list[float] = []
    config = {"remediation": {"include_library": False}}
    with common.running_stack(config) as stack:
        cpu0 = stack.cpu_seconds()
        async with stack.http(limits=httpx.Limits(max_connections=args.senders)) as http:
            sem = asyncio.Semaphore(args.senders)

            async def post(payload: dict[str, Any]) -> None:
                async with sem:
                    began = time.perf_counter()
                    resp = await http.post("/api/v1/alerts", json=payload)
                    latencies.append(time.perf_counter() - began)
                statuses.append(resp.status_code)
                if resp.status_code < 300:
                    ids.setdefault(payload["groupKey"], set()).add(resp.json()["incident_id"])

            t0 = time.monotonic()
            for burst in payloads:
                b0 = time.monotonic()
                await asyncio.gather(*(post(p) for p in burst))
                burst_seconds.append(time.monotonic() - b0)
            posted_at = time.monotonic()
            incident_ids = sorted({i for s in ids.values() for i in s})
            views: dict[str, dict[str, Any]] = {}

            async def view(incident_id: str) -> None:
                resp = await http.get(f"/api/v1/incidents/{incident_id}")
                if resp.status_code == 200:
                    views[incident_id] = resp.json()

            def complete(v: dict[str, Any] | None) -> bool:
                return (
                    v is not None
                    and len(v["alerts"]) == per_group
                    and all(a["status"] == "firing" for a in v["alerts"])
                    and v["notifications"] == len(payloads)
                )

            async def all_absorbed() -> bool:
                todo = [i for i in incident_ids if not complete(views.get(i))]
                await common.gather_limited([view(i) for i in todo], 10)
                return all(complete(views.get(i)) for i in incident_ids)

            try:
                absorbed_at = await common.poll_until(
                    all_absorbed, 60 if args.quick else 600, 0.5, "absorbed"
                )
            except TimeoutError:
                absorbed_at = None

            async def listed() -> list[dict[str, Any]]:
                resp = await http.get("/api/v1/incidents", params={"limit": 1000})
                if resp.status_code != 200:
                    return []  # visibility timed out under load: the caller polls again
                items: list[dict[str, Any]] = resp.json()["incidents"]
                return [i for i in items if i["alertname"] == "BenchStorm"]

            # Visibility is eventually consistent: wait (bounded) for the list to show every incident.
            listing: list[dict[str, Any]] = []

            async def list_complete() -> bool:
                nonlocal listing
                listing = await listed()
                return len(listing) >= n_groups

            try:
                await common.poll_until(list_complete, 30, 0.5, "incident list")
            except TimeoutError:
                pass
            view_bytes = sorted(len(json.dumps(v)) for v in views.values())
        cpu = common.cpu_delta(cpu0, stack.cpu_seconds())
        stack.assert_alive()
    posted = sum(len(b) for b in payloads)
    absorb_s = None if absorbed_at is None else round(absorbed_at - t0, 2)
    after_s = None if absorbed_at is None else round(absorbed_at - posted_at, 2)
    alerts_held = sum(len(v["alerts"]) for v in views.values())
    checks: dict[str, bool] = {
        "every notification answered 2xx": len(statuses) == posted and all(200 <= s < 300 for s in statuses),
        "exactly one incident per group (listed)": len(listing) == n_groups
        and len({i["id"] for i in listing}) == n_groups,
        "one incident id per group (ingest answers)": len(ids) == n_groups
        and all(len(s) == 1 for s in ids.values()),
        "every incident holds all its alerts and notifications": absorbed_at is not None,
    }
    figures: dict[str, Any] = {
        "notifications": posted,
        "alerts_per_group": per_group,
        "post_seconds": round(posted_at - t0, 2),
        "notifications_per_second": round(posted / (posted_at - t0), 1),
        "post_latency": common.latency_ms(latencies),
        "burst_seconds": [round(b, 2) for b in burst_seconds],
        "full_snapshot_bytes_max": max(sizes),
        "absorb_seconds_from_first_post": absorb_s,
        "absorb_seconds_after_last_post": after_s,
        "incidents_listed": len(listing),
        "alerts_held_in_views": alerts_held,
        "view_bytes_max": view_bytes[-1] if view_bytes else None,
        "cpu_seconds": cpu,
    }
    common.print_table(
        f"Alert storm: {n_alerts:,} alerts in {n_groups} groups, {bursts} growing bursts + 1 repeat",
        ["figure", "value"],
        [
            ["notifications posted", posted],
            ["full snapshot size (max)", f"{max(sizes) / 1024:.0f} KiB"],
            ["posting took", f"{figures['post_seconds']} s ({figures['notifications_per_second']}/s)"],
            [
                "post latency p50 / p99",
                f"{figures['post_latency']['p50_ms']} / {figures['post_latency']['p99_ms']} ms",
            ],
            ["bursts", ", ".join(f"{b:.1f}s" for b in burst_seconds)],
            ["incidents listed", len(listing)],
            ["alerts held in incident views", f"{alerts_held:,} / {per_group * n_groups:,}"],
            ["absorbed (all alerts in every view)", f"{absorb_s} s from first post, {after_s} s after last"],
            ["CPU seconds used", ", ".join(f"{k} {v}" for k, v in cpu.items())],
            ["largest incident view", f"{(view_bytes[-1] if view_bytes else 0) / 1024:.0f} KiB"],
        ],
    )
    common.print_checks(checks)
    common.console.print(common.machine_line(machine))
    common.write_result(
        NAME,
        args.results_dir,
        quick=args.quick,
        started=started,
        params={"alerts": n_alerts, "groups": n_groups, "bursts": bursts, "senders": args.senders},
        figures=figures,
        headline={
            "incidents": f"{len(listing)} for {n_groups} groups",
            "absorbed": f"{absorb_s} s for {n_alerts:,} alerts",
            "post p99": f"{figures['post_latency']['p99_ms']} ms",
        },
        checks=checks,
        machine=machine,
    )
    return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--alerts", type=int)
    p.add_argument("--groups", type=int)
    p.add_argument("--bursts", type=int, help="growing snapshots before the repeat")
    p.add_argument("--senders", type=int, default=10, help="concurrent POSTs within a burst")
    return common.run_async(bench(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
