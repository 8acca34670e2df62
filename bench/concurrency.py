"""Many simultaneous incidents through the known-pattern path, on ONE worker process.

    .venv/bin/python -m bench.concurrency [--quick] [--incidents 500] [--senders 20]

Each incident is its own alert group with its own `service` (remediation is one per target), and
a playbook matches it: RemediationWorkflow edits `services/<svc>/config.yaml` in a real git
worktree, commits, runs a sandboxed test command, pushes to a real bare remote (`git_push`) and
verifies against a real Prometheus with a query that holds at once (`vector(0) < 1`, hold 0s).
Alertmanager is not configured, so the still-firing precheck answers "unknown" and the workflow
goes ahead (it stops only on "resolved"), and verify skips the alert check.

A playbook's circuit breaker allows at most 100 runs per window (schema limit), so the playbook
is sharded: one copy per 50 incidents, each matching its own `shard` label. `--repos R` spreads
the shards over R config repositories (default 1: every fix is pushed to the same branch, and
pushes to one branch can only land one after another).

Measured: time from the first webhook until every incident is closed, per-incident time to heal,
and the worker's peak RSS (VmHWM in /proc). Checked: every incident closed `healed`, and the
remote holds exactly one fix commit per incident.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench import _histories, common
from demo.observability import prometheus_server
from devstack.pool import git, pool_playbook, seed_config_repo

NAME = "concurrency"
PER_PLAYBOOK = 50
#: Retries of a webhook answered 5xx/429 (Alertmanager retries too, with backoff).
RETRIES = 4


def playbook(
    shard: int, alertname: str, max_runs: int, hold_for: float = 0.0, repo: str = "config-0"
) -> dict[str, Any]:
    """The shard's copy of the pool playbook, verified by a query that holds at once."""
    return pool_playbook(
        f"bench-pool-raise-{shard}",
        alertname,
        matchers=[f'shard="{shard}"'],
        repo=repo,
        max_runs=max_runs,
        verify_query="vector(0)",
        hold_for=f"{hold_for:g}s",
        verify_timeout=f"{hold_for + 60:g}s",
    )


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def sample_timeline(view: dict[str, Any] | None) -> list[str]:
    """One incident's timeline as seconds since it opened: where the time goes."""
    if view is None:
        return []
    opened = parse_time(view["opened_at"])
    out = []
    for e in view["timeline"]:
        at = parse_time(e["at"])
        offset = (at - opened).total_seconds() if at and opened else float("nan")
        out.append(f"{offset:7.2f}s {e['kind']}: {e['message'][:100]}")
    return out


async def bench(args: Any) -> int:
    started = time.monotonic()
    machine = common.machine_facts()
    n = args.incidents or (4 if args.quick else 100)
    run = uuid.uuid4().hex[:6]
    alertname = f"BenchPoolExhausted{run}"
    services = [f"svc-{run}-{i:04d}" for i in range(n)]
    shards = (n + PER_PLAYBOOK - 1) // PER_PLAYBOOK
    n_repos = max(1, min(args.repos, shards))
    figures: dict[str, Any] = {}
    views: dict[str, dict[str, Any]] = {}
    statuses: list[int] = []
    #: Answers that Alertmanager would retry (5xx, 429): the bench retries them the same way.
    retried: list[str] = []
    with tempfile.TemporaryDirectory(prefix="selfheal-bench-conc-") as tmp:
        root = Path(tmp)
        repos: dict[str, tuple[Path, Path]] = {}
        for r in range(n_repos):
            mine = [svc for i, svc in enumerate(services) if (i // PER_PLAYBOOK) % n_repos == r]
            repos[f"config-{r}"] = seed_config_repo(root / f"config-{r}", mine)
        pb_dir = root / "playbooks"
        pb_dir.mkdir()
        for s in range(shards):
            (pb_dir / f"pool-{s}.yaml").write_text(
                yaml.safe_dump(
                    playbook(s, alertname, 100, args.hold_for, repo=f"config-{s % n_repos}"), sort_keys=False
                )
            )
        with prometheus_server(root / "prom", []) as prom_url:
            config = {
                "remediation": {
                    "include_library": False,
                    "playbook_dirs": [str(pb_dir)],
                    "repos": {name: {"path": str(work)} for name, (_, work) in repos.items()},
                    "prometheus_url": prom_url,
                    "verify_poll_seconds": 0.5,
                },
                "evidence": {"prometheus_url": prom_url},
            }
            if args.max_concurrent is not None:
                config["incident"] = {"max_concurrent": args.max_concurrent}
            with common.running_stack(config, root=root / "stack") as stack:
                worker_pid = stack.pid("worker")
                rss_idle = common.proc_status_kib(worker_pid, "VmRSS")
                cpu0 = stack.cpu_seconds()
                starts = common.now_iso()
                payloads = []
                for i, svc in enumerate(services):
                    labels = {
                        "alertname": alertname,
                        "service": svc,
                        "shard": str(i // PER_PLAYBOOK),
                        "severity": "warning",
                    }
                    fp = hashlib.sha256(svc.encode()).hexdigest()[:16]
                    key = f'{{}}:{{alertname="{alertname}",service="{svc}"}}'
                    payloads.append(
                        common.notification(
                            key, [common.alert(labels, fp, starts, "connection pool exhausted")], labels
                        )
                    )
                ids: list[str] = []
                rss_samples: list[int] = []
                async with stack.http(limits=httpx.Limits(max_connections=args.senders)) as http:
                    sem = asyncio.Semaphore(args.senders)

                    async def post(payload: dict[str, Any]) -> None:
                        """Like Alertmanager: a 5xx, 429 or a failed connection is retried with backoff
                        (safe: the notification is idempotent), so what counts is the last answer."""
                        for attempt in range(RETRIES + 1):
                            try:
                                async with sem:
                                    resp = await http.post("/api/v1/alerts", json=payload)
                            except httpx.HTTPError as err:
                                if attempt == RETRIES:
                                    raise
                                retried.append(type(err).__name__)
                            else:
                                if (resp.status_code < 500 and resp.status_code != 429) or attempt == RETRIES:
                                    break
                                retried.append(f"{resp.status_code}: {resp.text[:120]}")
                            await asyncio.sleep(2**attempt)
                        statuses.append(resp.status_code)
                        if resp.status_code < 300:
                            ids.append(resp.json()["incident_id"])

                    t0 = time.monotonic()
                    wall0 = datetime.now().astimezone()
                    await asyncio.gather(*(post(p) for p in payloads))
                    posted_s = time.monotonic() - t0
                    settled: dict[str, str] = {}
                    list_errors: list[str] = []

                    async def all_settled() -> bool:
                        """Every incident closed, or waiting for a human (its fix did not run)."""
                        stack.assert_alive()
                        rss = common.proc_status_kib(worker_pid, "VmRSS")
                        if rss:
                            rss_samples.append(rss)
                        for stage in ("closed", "awaiting_decision"):
                            try:
                                resp = await http.get(
                                    "/api/v1/incidents", params={"stage": stage, "limit": 1000}
                                )
                            except httpx.HTTPError as err:
                                list_errors.append(type(err).__name__)
                                return False
                            if resp.status_code != 200:
                                # The list reads Temporal visibility; under this load it may time out: retry.
                                list_errors.append(f"{resp.status_code}: {resp.text[:200]}")
                                return False
                            for item in resp.json()["incidents"]:
                                if item["alertname"] == alertname:
                                    settled[item["id"]] = item["stage"]
                        return len(settled) >= len(ids)

                    try:
                        done_at = await common.poll_until(
                            all_settled, args.timeout, 2.0, "all incidents settled"
                        )
                        completion_s: float | None = round(done_at - t0, 1)
                    except TimeoutError:
                        completion_s = None
                    peak_kib = common.proc_status_kib(worker_pid, "VmHWM")
                    cpu = common.cpu_delta(cpu0, stack.cpu_seconds())

                    async def view(incident_id: str) -> None:
                        resp = await http.get(f"/api/v1/incidents/{incident_id}")
                        if resp.status_code == 200:
                            views[incident_id] = resp.json()

                    await common.gather_limited([view(i) for i in ids], 10)
                    healed_ids = [i for i in ids if views.get(i, {}).get("outcome") == "healed"]
                    history = await _histories.heal_costs(
                        stack.temporal_address,
                        healed_ids,
                        [views[i]["service"] for i in healed_ids],
                        stack.task_queue,
                    )
        messages = [
            m
            for remote, _ in repos.values()
            for m in git(remote, "log", "--format=%B%x00", "main").split("\x00")
        ]
    fix_ids = [
        line.split(":", 1)[1].strip()
        for m in messages
        for line in m.splitlines()
        if line.startswith("Selfheal-Incident:")
    ]
    healed = [v for v in views.values() if v["stage"] == "closed" and v["outcome"] == "healed"]
    # Unfinished: neither closed nor waiting for a human, i.e. stuck somewhere in between.
    unfinished = [i for i in ids if views.get(i, {}).get("stage") not in ("closed", "awaiting_decision")]
    heal_s = []
    last_close = None
    for v in healed:
        opened, closed_at = parse_time(v["opened_at"]), parse_time(v["closed_at"])
        if opened and closed_at:
            heal_s.append((closed_at - opened).total_seconds())
            last_close = closed_at if last_close is None or closed_at > last_close else last_close
    fix_started = [
        (parse_time(e["at"]) - parse_time(v["opened_at"])).total_seconds()  # type: ignore[operator]
        for v in healed
        for e in v["timeline"]
        if e["kind"] == "remediation_started"
    ]
    outcomes: dict[str, int] = {}
    not_healed: dict[str, int] = {}
    for v in views.values():
        key = str(v.get("outcome") or v["stage"])
        outcomes[key] = outcomes.get(key, 0) + 1
        if v.get("outcome") != "healed":
            why = next(
                (
                    e["message"]
                    for e in v["timeline"]
                    if e["kind"].startswith("remediation_") and e["kind"] != "remediation_started"
                ),
                "no remediation ran",
            )
            not_healed[why[:160]] = not_healed.get(why[:160], 0) + 1
    figures = {
        "incidents": n,
        "playbooks": shards,
        "repos": n_repos,
        "post_seconds": round(posted_s, 2),
        "webhook_retries": {"count": len(retried), "first": retried[:3]},
        "completion_seconds": completion_s,
        "settled": "every incident closed or awaiting a decision"
        if completion_s is not None
        else "timed out",
        "last_close_after_first_post_seconds": round((last_close - wall0).total_seconds(), 1)
        if last_close
        else None,
        "incidents_per_minute": round(n / completion_s * 60, 1) if completion_s else None,
        "time_to_heal_seconds": {
            "min": round(min(heal_s), 1) if heal_s else None,
            "p10": round(common.percentile(heal_s, 10), 1),
            "p50": round(common.percentile(heal_s, 50), 1),
            "p90": round(common.percentile(heal_s, 90), 1),
            "p99": round(common.percentile(heal_s, 99), 1),
            "max": round(max(heal_s), 1) if heal_s else None,
        },
        "p50_over_max": round(common.percentile(heal_s, 50) / max(heal_s), 2) if heal_s else None,
        # Where the wait is: until the fix starts (ticket, evidence, match, waiting in line), and the fix.
        "fix_started_after_seconds": {
            "p10": round(common.percentile(fix_started, 10), 1),
            "p50": round(common.percentile(fix_started, 50), 1),
            "p90": round(common.percentile(fix_started, 90), 1),
        },
        "worker_rss_idle_mib": round((rss_idle or 0) / 1024, 1),
        "worker_peak_rss_mib": round((peak_kib or 0) / 1024, 1),
        "worker_rss_max_sampled_mib": round(max(rss_samples) / 1024, 1) if rss_samples else None,
        "cpu_seconds": cpu,
        "cpu_seconds_per_heal": {k: round(v / max(len(healed), 1), 3) for k, v in cpu.items()},
        "history_per_heal": history,
        "incident_list_errors": {"count": len(list_errors), "first": list_errors[:3]},
        "outcomes": outcomes,
        "why_not_healed": not_healed,
        "fix_commits": len(fix_ids),
        "unfinished": len(unfinished),
        "sample_timeline": sample_timeline(healed[-1] if healed else None),
        # The incident that opened first: with turns it should heal among the first.
        "first_opened_timeline": sample_timeline(
            min(healed, key=lambda v: str(v["opened_at"])) if healed else None
        ),
    }
    per_heal_cpu = round(sum(figures["cpu_seconds_per_heal"].get(k, 0.0) for k in ("worker", "temporal")), 3)
    figures["cpu_seconds_per_heal_worker_temporal"] = per_heal_cpu
    checks = {
        "every webhook answered 2xx (after retries)": len(statuses) == n
        and all(200 <= s < 300 for s in statuses),
        "no incident left unfinished": not unfinished and len(views) == n,
        "every incident healed": len(healed) == n,
        "fix commits == incidents (one each)": len(fix_ids) == n and set(fix_ids) == set(ids),
    }
    common.print_table(
        f"{n} simultaneous known-pattern incidents on one worker (fix → test → deploy → verify)",
        ["figure", "value"],
        [
            ["incidents / playbooks / repos", f"{n} / {shards} / {n_repos}"],
            [
                "webhooks posted in",
                f"{figures['post_seconds']} s ({len(retried)} retried, as Alertmanager would)",
            ],
            ["all settled after first webhook", f"{completion_s} s (closed, or awaiting a human)"],
            ["throughput", f"{figures['incidents_per_minute']} incidents/min"],
            [
                "time to heal min / p10 / p50 / p90 / max",
                " / ".join(
                    f"{figures['time_to_heal_seconds'][k]} s" for k in ("min", "p10", "p50", "p90", "max")
                )
                + f" (p50 / max {figures['p50_over_max']})",
            ],
            [
                "fix started after p10 / p50 / p90",
                " / ".join(f"{figures['fix_started_after_seconds'][k]} s" for k in ("p10", "p50", "p90")),
            ],
            [
                "worker RSS idle → peak",
                f"{figures['worker_rss_idle_mib']} → {figures['worker_peak_rss_mib']} MiB",
            ],
            ["CPU seconds used", ", ".join(f"{k} {v}" for k, v in cpu.items())],
            [
                "CPU seconds per healed incident",
                ", ".join(f"{k} {v}" for k, v in figures["cpu_seconds_per_heal"].items())
                + f"; worker + temporal {per_heal_cpu}",
            ],
            [
                "history per heal (incident + remediation + control share)",
                f"{history['events_per_heal']} events, {history['kib_per_heal']} KiB",
            ],
            [
                "activities per heal",
                ", ".join(
                    f"{k} {v}"
                    for part in ("incident_workflow", "remediation_workflow")
                    for k, v in history[part]["activities"].items()
                ),
            ],
            ["outcomes", ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))],
            *[[f"not healed ({n})", why] for why, n in sorted(not_healed.items(), key=lambda kv: -kv[1])[:4]],
            ["fix commits on the remote", len(fix_ids)],
        ],
    )
    common.print_checks(checks)
    common.console.print(common.machine_line(machine))
    common.write_result(
        NAME,
        args.results_dir,
        quick=args.quick,
        started=started,
        params={
            "incidents": n,
            "senders": args.senders,
            "per_playbook": PER_PLAYBOOK,
            "hold_for": args.hold_for,
            "repos": n_repos,
            "max_concurrent": args.max_concurrent,
        },
        figures=figures,
        headline={
            f"{n} incidents": f"settled in {completion_s} s, {len(healed)} healed",
            "worker peak RSS": f"{figures['worker_peak_rss_mib']} MiB",
            "fix commits": len(fix_ids),
        },
        checks=checks,
        machine=machine,
    )
    return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument(
        "--incidents", type=int, help="simultaneous incidents (default 100; --quick 4; the target is 500)"
    )
    p.add_argument("--senders", type=int, default=20, help="concurrent webhook POSTs")
    p.add_argument(
        "--hold-for",
        type=float,
        default=0.0,
        help="verify hold_for seconds (default 0, cheap; real playbooks hold a minute or more)",
    )
    p.add_argument(
        "--repos", type=int, default=1, help="config repositories the fixes are pushed to (default 1)"
    )
    p.add_argument(
        "--max-concurrent",
        type=int,
        help="incident.max_concurrent: incidents worked on at once (default 10; 0: no bound)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="give up waiting after this many seconds")
    return common.run_async(bench(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
