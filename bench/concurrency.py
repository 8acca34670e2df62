"""Many simultaneous incidents through the known-pattern path on ONE worker: completion time, worker RSS.

Each incident is its own alert group on its own target (remediation is one at a time per target),
and a playbook matches it: `git_edit` in a real local clone → a sandboxed test command → `git_push`
to a bare remote → verify against a real Prometheus (`vector(0) < 1`, hold 0s) → healed. The path
is the real one end to end; it is cheap only because the verify condition holds at once. Every
playbook handles at most 100 targets, so each stays within its own circuit breaker (max_runs 100
per hour): the breaker is exercised, not bypassed. Afterwards: every incident closed as healed and
exactly one fix commit per incident on the remote.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

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
    rss_kib,
    write_result,
)

NAME = "concurrency"
PER_PLAYBOOK = 100  # the schema's max_runs ceiling


def target(i: int) -> str:
    return f"t-{i:04d}"


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120)
    return out.stdout


def make_repos(root: Path, n: int) -> tuple[Path, Path]:
    """A bare remote (the GitOps target) seeded with one config per target, and selfheal's clone."""
    remote, seed, work = root / "remote.git", root / "seed", root / "work"
    git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    git(root, "init", "--quiet", "--initial-branch=main", str(seed))
    for i in range(n):
        cfg = seed / "services" / target(i) / "config.yaml"
        cfg.parent.mkdir(parents=True)
        cfg.write_text("pool:\n  size: 5\n  timeout: 30s\n")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "--quiet", "-m", "seed")
    git(seed, "push", "--quiet", str(remote), "main:main")
    git(root, "clone", "--quiet", "--branch", "main", str(remote), str(work))
    return remote, work


def playbook(k: int, hold_for: float) -> dict[str, Any]:
    return {
        "apiVersion": "selfheal/v1",
        "kind": "Playbook",
        "name": f"bench-pool-{k}",
        "description": "Connection pool exhausted: raise the pool size (benchmark)",
        "category": "capacity",
        "match": {"alertname": f"BenchPool{k}", "matchers": ['service=~"t-.+"']},
        "target": "{{ params.service }}",
        "repo": "config",
        "params": {"service": {"from": "label", "key": "service", "pattern": "^t-[0-9]{4}$"}},
        "policy": {
            "mode": "auto",
            "max_runs": PER_PLAYBOOK,
            "window": "1h",
            "cooldown": "0s",
            "require_firing": False,
        },
        "fix": [
            {
                "git_edit": {
                    "file": "services/{{ params.service }}/config.yaml",
                    "key": "pool.size",
                    "scale": 4,
                    "max_value": 100,
                }
            }
        ],
        "test": [
            {
                "command": {
                    "argv": ["grep", "-q", "size: 20", "services/{{ params.service }}/config.yaml"],
                    "timeout": "60s",
                }
            }
        ],
        "deploy": [{"git_push": {"branch": "main"}}],
        "verify": {
            "query": "vector(0)",
            "condition": "< 1",
            "hold_for": f"{hold_for:g}s",
            "timeout": f"{hold_for + 60:g}s",
        },
        "rollback": "auto",
    }


class RssSampler:
    """Samples a process's RSS every `interval` seconds in a thread (VmHWM gives the exact peak)."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.perf_counter() - self._t0, rss_kib(self.pid)[0]))
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (not its children) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(stack: BenchStack, args: Any, remote: Path) -> dict[str, Any]:
    n = args.incidents
    worker = stack.pid("worker")
    headers = {**stack.headers, "Content-Type": "application/json"}
    ids: dict[int, str] = {}
    errors: Counter[str] = Counter()
    limit = asyncio.Semaphore(args.senders)
    cpu0 = cpu_seconds(worker)
    rss_before = rss_kib(worker)[0]
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=120) as http:

        async def fire(i: int) -> None:
            labels = {"service": target(i), "severity": "warning", "instance": f"{target(i)}:8080"}
            name = f"BenchPool{i // PER_PLAYBOOK}"
            body = json.dumps(
                notification(target(i), name, [alert(name, f"fp-{target(i)}", labels, now_iso())])
            )
            async with limit:
                for _attempt in range(5):
                    try:
                        resp = await http.post("/api/v1/alerts", content=body)
                    except httpx.HTTPError as err:
                        errors[type(err).__name__] += 1
                        continue
                    if resp.status_code == 202:
                        ids[i] = resp.json()["incident_id"]
                        return
                    errors[str(resp.status_code)] += 1

        with RssSampler(worker) as sampler:
            start = time.perf_counter()
            await asyncio.gather(*(fire(i) for i in range(n)))
            posted_seconds = elapsed(start)
            console.print(f"{len(ids)} incidents opened in {posted_seconds:.1f}s; waiting for them to close…")
            closed: list[dict[str, Any]] = []
            listed: list[dict[str, Any]] = []
            deadline = time.monotonic() + args.timeout
            last_report = 0.0
            while time.monotonic() < deadline:
                stack.check_alive()
                resp = await http.get("/api/v1/incidents", params={"limit": 1000})
                if resp.status_code == 200:
                    listed = [i for i in resp.json()["incidents"] if i["alertname"].startswith("BenchPool")]
                    closed = [i for i in listed if i["stage"] == "closed"]
                    if len(closed) >= len(ids):
                        break
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    stages = Counter(i["stage"] for i in listed)
                    console.print(
                        f"  {elapsed(start):6.0f}s  {dict(stages)}"
                        f"  worker RSS {rss_kib(worker)[0] // 1024} MiB"
                    )
                await asyncio.sleep(1.0)
            total_seconds = elapsed(start)
        cur_rss, peak_rss = rss_kib(worker)
        cpu = cpu_seconds(worker) - cpu0

    outcomes = Counter(i["outcome"] for i in closed)
    durations = [
        (datetime.fromisoformat(i["closed_at"]) - datetime.fromisoformat(i["opened_at"])).total_seconds()
        for i in closed
        if i["closed_at"] and i["opened_at"]
    ]
    unfinished = sorted(set(ids.values()) - {i["id"] for i in closed})
    # One fix commit per incident on the deployed branch, each carrying its incident's trailer.
    log = git(remote, "log", "main", "--format=%B%x00")
    fixed = re.findall(r"^Selfheal-Incident: (\S+)$", log, flags=re.MULTILINE)
    fix_counts = Counter(fixed)
    return {
        "incidents": n,
        "opened": len(ids),
        "post_seconds": round(posted_seconds, 2),
        "completion_seconds": round(total_seconds, 2),
        "incidents_per_minute": round(len(closed) / total_seconds * 60, 1),
        "open_to_closed_p50_s": round(percentile(durations, 50), 2),
        "open_to_closed_p99_s": round(percentile(durations, 99), 2),
        "open_to_closed_max_s": round(max(durations), 2) if durations else None,
        "closed": len(closed),
        "outcomes": dict(outcomes),
        "unfinished": unfinished[:20],
        "unfinished_count": len(unfinished),
        "fix_commits": len(fixed),
        "incidents_with_one_fix_commit": sum(1 for v in ids.values() if fix_counts[v] == 1),
        "worker_rss_before_mib": round(rss_before / 1024, 1),
        "worker_peak_rss_mib": round(peak_rss / 1024, 1),
        "worker_rss_end_mib": round(cur_rss / 1024, 1),
        "worker_cpu_seconds": round(cpu, 1),
        "worker_rss_samples_mib": [
            [round(t, 1), round(kib / 1024, 1)]
            for t, kib in sampler.samples[:: max(1, len(sampler.samples) // 120)]
        ],
        "errors": dict(errors),
    }


async def run(args: Any) -> int:
    from tests.services_prom import MetricTarget, prometheus_server

    machine = machine_facts()
    n = args.incidents
    scratch = Path(tempfile.mkdtemp(prefix="selfheal-bench-repos-"))
    try:
        remote, work = make_repos(scratch, n)
        books = scratch / "playbooks"
        books.mkdir()
        for k in range((n + PER_PLAYBOOK - 1) // PER_PLAYBOOK):
            (books / f"bench-pool-{k}.yaml").write_text(
                yaml.safe_dump(playbook(k, args.hold_for), sort_keys=False)
            )
        with MetricTarget() as scraped, prometheus_server(scratch / "prom", [scraped.url]) as prom_url:
            config = {
                "remediation": {
                    "include_library": False,
                    "playbook_dirs": [str(books)],
                    "repos": {"config": {"path": str(work)}},
                    "prometheus_url": prom_url,
                    "verify_poll_seconds": 0.5,
                },
            }
            with embedded_stack(config, keep=args.keep) as stack:
                console.print(f"{n} incidents, {len(list(books.iterdir()))} playbooks, one worker…")
                res = await drive(stack, args, remote)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    problems = []
    if res["opened"] != n:
        problems.append(f"only {res['opened']}/{n} incidents accepted")
    if res["unfinished_count"]:
        problems.append(f"{res['unfinished_count']} incidents unfinished, e.g. {res['unfinished'][:5]}")
    if res["outcomes"].get("healed", 0) != n:
        problems.append(f"outcomes {res['outcomes']}, expected {n} healed")
    if res["fix_commits"] != n or res["incidents_with_one_fix_commit"] != n:
        problems.append(f"{res['fix_commits']} fix commits for {n} incidents")
    print_table(
        f"Concurrency: {n} simultaneous known-pattern incidents on one worker",
        ["figure", "value"],
        [
            ["incidents opened (webhook) in (s)", res["post_seconds"]],
            ["all closed after (s)", res["completion_seconds"]],
            ["incidents/minute", res["incidents_per_minute"]],
            ["open→closed p50 / p99 (s)", f"{res['open_to_closed_p50_s']} / {res['open_to_closed_p99_s']}"],
            ["outcomes", res["outcomes"]],
            ["fix commits on the remote", res["fix_commits"]],
            [
                "worker RSS before → peak (MiB)",
                f"{res['worker_rss_before_mib']} → {res['worker_peak_rss_mib']}",
            ],
            ["worker CPU (s)", res["worker_cpu_seconds"]],
        ],
    )
    print_machine(machine)
    for p in problems:
        fail(p)
    write_result(
        NAME,
        params={
            "incidents": n,
            "senders": args.senders,
            "hold_for": args.hold_for,
            "timeout": args.timeout,
            "quick": args.quick,
        },
        results=res,
        headline={
            "incidents": n,
            "completion_seconds": res["completion_seconds"],
            "worker_peak_rss_mib": res["worker_peak_rss_mib"],
            "healed": res["outcomes"].get("healed", 0),
        },
        checks={"all_healed_one_commit_each": not problems, "problems": problems},
        machine=machine,
        out=args.out,
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else NAME)
    parser.add_argument("--incidents", type=int, default=500)
    parser.add_argument("--senders", type=int, default=20, help="concurrent webhook requests while opening")
    parser.add_argument(
        "--hold-for", type=float, default=0.0, help="verify hold_for seconds (0: the condition holds at once)"
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds to wait for every incident")
    args = parser.parse_args(argv)
    if args.quick:
        args.incidents, args.senders, args.timeout = 3, 3, 240
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
