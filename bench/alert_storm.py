"""Alert storm: many alerts in a few groups, posted as Alertmanager would, become exactly one incident each.

Alertmanager sends one notification per alert group, each a full snapshot of the group's alerts,
growing as alerts join, and resends the last snapshot on repeat. We replay that for `--alerts`
alerts in `--groups` groups over `--bursts` rounds plus `--repeats` resends, through the real API,
then check that exactly `--groups` incidents exist (the API's incidents list, read from Temporal
visibility) and time how long until every incident's view holds all of its alerts.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from typing import Any

import httpx

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

NAME = "alert_storm"
ALERTNAME = "BenchStorm"


def group_alerts(tag: str, group: int, count: int) -> list[dict[str, Any]]:
    started = now_iso()
    return [
        alert(
            ALERTNAME,
            f"{tag}g{group}a{i}",
            {
                "service": f"storm-{group}",
                "severity": "critical",
                "instance": f"10.{group}.{i // 250}.{i % 250}",
            },
            started,
        )
        for i in range(count)
    ]


def snapshots(tag: str, groups: int, per_group: int, bursts: int) -> list[list[bytes]]:
    """Round r holds each group's snapshot after r+1 bursts of arrivals (growing, cumulative)."""
    alerts = [group_alerts(tag, g, per_group) for g in range(groups)]
    rounds = []
    for r in range(bursts):
        size = math.ceil(per_group * (r + 1) / bursts)
        rounds.append(
            [
                json.dumps(notification(f"{tag}-{g}", ALERTNAME, alerts[g][:size])).encode()
                for g in range(groups)
            ]
        )
    return rounds


async def storm(stack: BenchStack, args: Any) -> dict[str, Any]:
    tag = f"s{int(time.time())}"
    per_group = args.alerts // args.groups
    rounds = snapshots(tag, args.groups, per_group, args.bursts)
    rounds += [rounds[-1]] * args.repeats  # repeat_interval: the same final snapshot again
    headers = {**stack.headers, "Content-Type": "application/json"}
    latencies: list[float] = []
    incident_of: dict[int, set[str]] = {g: set() for g in range(args.groups)}
    posted = [0] * args.groups
    errors: dict[str, int] = {}
    limit = asyncio.Semaphore(args.senders)
    largest = max(len(b) for b in rounds[-1])

    async with httpx.AsyncClient(
        base_url=stack.api_url,
        headers=headers,
        timeout=120,
        limits=httpx.Limits(max_connections=args.senders),
    ) as http:

        async def post(g: int, body: bytes) -> None:
            async with limit:
                t0 = time.perf_counter()
                for _attempt in range(5):
                    try:
                        resp = await http.post("/api/v1/alerts", content=body)
                    except httpx.HTTPError as err:
                        errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1
                        continue
                    if resp.status_code == 202:
                        latencies.append(time.perf_counter() - t0)
                        posted[g] += 1
                        incident_of[g].add(resp.json()["incident_id"])
                        return
                    errors[str(resp.status_code)] = errors.get(str(resp.status_code), 0) + 1

        start = time.perf_counter()
        for bodies in rounds:  # one burst: every group's snapshot at once, as after a group_interval
            await asyncio.gather(*(post(g, b) for g, b in enumerate(bodies)))
        post_seconds = elapsed(start)
        stack.check_alive()

        # Absorbed: every incident's view holds all its alerts and counted every notification.
        ids = {g: next(iter(s)) for g, s in incident_of.items() if len(s) == 1}
        pending = set(ids)
        seen_alerts: dict[int, int] = {}
        deadline = time.monotonic() + args.timeout
        while pending and time.monotonic() < deadline:
            for g in sorted(pending):
                resp = await http.get(f"/api/v1/incidents/{ids[g]}")
                if resp.status_code != 200:
                    continue
                view = resp.json()
                seen_alerts[g] = len(view["alerts"])
                if seen_alerts[g] == per_group and view["notifications"] == posted[g]:
                    pending.discard(g)
            if pending:
                await asyncio.sleep(0.2)
        absorbed_seconds = elapsed(start)

        # Exactly one incident per group in the API's list (visibility is eventually consistent: poll).
        listed: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            resp = await http.get("/api/v1/incidents", params={"limit": 1000})
            listed = [i for i in resp.json()["incidents"] if i["alertname"] == ALERTNAME]
            if len(listed) >= args.groups:
                break
            await asyncio.sleep(0.5)

    return {
        "tag": tag,
        "alerts_per_group": per_group,
        "notifications": sum(posted),
        "notifications_expected": args.groups * len(rounds),
        "largest_body_bytes": largest,
        "post_seconds": round(post_seconds, 2),
        "notifications_per_s": round(sum(posted) / post_seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "absorbed_seconds": round(absorbed_seconds, 2) if not pending else None,
        "absorb_after_last_post_seconds": round(absorbed_seconds - post_seconds, 2) if not pending else None,
        "groups_not_absorbed": {str(g): seen_alerts.get(g) for g in sorted(pending)},
        "groups_not_one_incident": {str(g): sorted(s) for g, s in incident_of.items() if len(s) != 1},
        "incidents_listed": len(listed),
        "listed_ids_match": sorted(i["id"] for i in listed) == sorted(ids.values()),
        "errors": errors,
    }


async def run(args: Any) -> int:
    machine = machine_facts()
    with embedded_stack(keep=args.keep) as stack:
        console.print(f"posting {args.alerts} alerts in {args.groups} groups over {args.bursts} bursts…")
        res = await storm(stack, args)
    problems = []
    if res["incidents_listed"] != args.groups or not res["listed_ids_match"]:
        problems.append(f"{res['incidents_listed']} incidents listed, expected exactly {args.groups}")
    if res["groups_not_one_incident"]:
        problems.append(f"groups split over several incidents: {res['groups_not_one_incident']}")
    if res["groups_not_absorbed"]:
        problems.append(f"not absorbed within {args.timeout}s: {res['groups_not_absorbed']}")
    if res["notifications"] != res["notifications_expected"]:
        problems.append(f"{res['notifications']}/{res['notifications_expected']} notifications accepted")
    absorbed = res["absorbed_seconds"]
    rate = round(args.groups * res["alerts_per_group"] / absorbed, 1) if absorbed else "-"
    print_table(
        f"Alert storm: {args.alerts} alerts in {args.groups} groups,"
        f" {args.bursts} bursts + {args.repeats} repeats",
        ["figure", "value"],
        [
            ["notifications posted", res["notifications"]],
            ["largest notification (bytes)", res["largest_body_bytes"]],
            ["posting took (s)", res["post_seconds"]],
            ["notifications/s", res["notifications_per_s"]],
            [
                "alerts/s (in snapshots)",
                round(res["notifications"] * res["alerts_per_group"] / 2 / res["post_seconds"], 1),
            ],
            ["webhook p50 / p99 (ms)", f"{res['p50_ms']} / {res['p99_ms']}"],
            ["all alerts in every view after (s)", res["absorbed_seconds"]],
            ["  of which after the last post (s)", res["absorb_after_last_post_seconds"]],
            ["incidents listed", f"{res['incidents_listed']} (expected {args.groups})"],
        ],
    )
    print_machine(machine)
    for p in problems:
        fail(p)
    write_result(
        NAME,
        params={k: getattr(args, k) for k in ("alerts", "groups", "bursts", "repeats", "senders", "quick")},
        results=res,
        headline={
            "incidents": res["incidents_listed"],
            "absorbed_seconds": res["absorbed_seconds"],
            "notifications_per_s": res["notifications_per_s"],
            "alerts_absorbed_per_s": rate,
        },
        checks={"exactly_one_incident_per_group": not problems, "problems": problems},
        machine=machine,
        out=args.out,
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--alerts", type=int, default=10_000)
    parser.add_argument("--groups", type=int, default=50)
    parser.add_argument("--bursts", type=int, default=10, help="rounds in which the groups grow")
    parser.add_argument("--repeats", type=int, default=2, help="resends of the final snapshot")
    parser.add_argument("--senders", type=int, default=10, help="concurrent webhook requests")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for absorption")
    args = parser.parse_args(argv)
    if args.quick:
        args.alerts, args.groups, args.bursts, args.repeats, args.senders = 24, 3, 2, 1, 3
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
