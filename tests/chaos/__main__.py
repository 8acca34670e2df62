"""`make chaos`: randomized fault trials on the real loop, one fault per trial, then checked.

    .venv/bin/python -m tests.chaos [--seed 1] [--trials 50] [--parallel 3] [--bound 180]
                                    [--kinds "kill worker" "tracker 5xx" ...]

One long-lived loop for the whole run (tests/chaos/world.py): the Temporal dev server, the
worker and the API as real processes, Prometheus and Alertmanager, a bare git remote, Jira (the
fake, over HTTP). Each trial is its own alert group: a known pattern that heals (fix commit,
push, verified in Prometheus) or an unknown one that is escalated, while one fault hits at a
random moment: the worker, the API or Temporal SIGKILLed and restarted on the same data;
Prometheus or Alertmanager killed and restarted on the same port a few seconds later; Jira
answering 503 or slower than the client's timeout; the remote refusing pushes.

Checked after the run: one incident per alert group, one ticket per incident, no repeated ticket
comment, at most one fix commit, one fix deploy and one rollback deploy per incident, every
notification the API accepted counted by its incident, every incident finished (closed, or
awaiting a decision) within `--bound` seconds of its alert. The last line is the verdict; the
exit code is 1 on any duplicate, loss or stuck incident.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.common import machine_facts, machine_line, run_async
from tests.chaos.trials import KINDS, PER_PLAYBOOK, Result, by_kind, check, run_all, schedule
from tests.chaos.world import running_world

console = Console(width=max(140, Console().width))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1, help="the same seed runs the same trials (default 1)")
    p.add_argument("--trials", type=int, default=50, help="how many trials (default 50)")
    p.add_argument("--parallel", type=int, default=3, help="trials in flight at once (default 3)")
    p.add_argument(
        "--bound",
        type=float,
        default=180.0,
        help="seconds from the alert within which an incident must finish",
    )
    p.add_argument("--kinds", nargs="+", choices=sorted(KINDS), help="only these fault kinds")
    args = p.parse_args(argv)
    if args.trials < 1 or args.parallel < 1:
        p.error("--trials and --parallel must be at least 1")
    return args


async def chaos(args: argparse.Namespace) -> int:
    began = time.monotonic()
    machine = machine_facts()
    plans = schedule(args.seed, args.trials, args.kinds)
    shards = (len(plans) + PER_PLAYBOOK - 1) // PER_PLAYBOOK
    console.print(
        f"chaos: seed {args.seed}, {len(plans)} trials, {args.parallel} in flight, bound {args.bound:.0f}s"
    )

    def progress(r: Result) -> None:
        took = (
            f"finished in {r.finished_s:.1f}s at {r.stage}" if r.finished_s is not None else "[red]STUCK[/]"
        )
        hit = f"hit at {r.fault_at:.1f}s" if r.fault_at is not None else "never hit"
        console.print(f"  {r.plan.describe()}: {hit}, {took}")

    with tempfile.TemporaryDirectory(prefix="selfheal-chaos-") as tmp:
        with running_world(Path(tmp), [p.service for p in plans], shards) as world:
            ready = time.monotonic()
            console.print(f"  loop up in {ready - began:.0f}s")
            async with world.stack.http() as http:
                results = await run_all(
                    world, http, plans, parallel=args.parallel, bound=args.bound, progress=progress
                )
                world.assert_alive()
                await asyncio.sleep(3)  # late side effects (a retried push or create) land before counting
                await check(world, http, results)
            trials_s = time.monotonic() - ready
            restarts = dict(world.restarts)
    report(results, trials_s, restarts, machine)
    dup = sum(len(r.duplicates) for r in results)
    lost = sum(len(r.lost) for r in results)
    stuck = sum(r.stuck for r in results)
    print(
        f"chaos: {len(results)} trials, {dup} duplicate side effects, {lost} lost, {stuck} stuck", flush=True
    )
    return 1 if dup or lost or stuck else 0


def report(results: list[Result], trials_s: float, restarts: dict[str, int], machine: dict[str, Any]) -> None:
    table = Table(title=f"Chaos trials per fault kind ({len(results)} trials in {trials_s:.0f}s)")
    for col in ("fault", "trials", "healed", "escalated", "duplicates", "lost", "stuck", "median finish s"):
        table.add_column(col, justify="left" if col == "fault" else "right")
    for row in by_kind(results):
        table.add_row(*(str(c) for c in row.cells()))
    console.print(table)
    console.print("restarts: " + (", ".join(f"{k} {v}" for k, v in sorted(restarts.items())) or "none"))
    console.print(
        "escalated: awaiting a decision, or closed otherwise than healed (an escalated incident whose"
        " alert resolved closes after the quiet period)"
    )
    for r in results:
        if r.why:
            also = f"; also in flight: {', '.join(r.also_hit_by)}" if r.also_hit_by else ""
            console.print(f"{r.plan.describe()}: not healed, {r.stage} {r.outcome}{also}\n    {r.why}")
    for r in results:
        problems = [*(f"duplicate: {d}" for d in r.duplicates), *(f"lost: {x}" for x in r.lost)]
        if r.stuck:
            problems.append(f"stuck: not finished within the bound (last seen at stage {r.stage or 'none'})")
        if problems:
            hit = f"hit at {r.fault_at:.1f}s" if r.fault_at is not None else "never hit"
            also = f"; also in flight: {', '.join(r.also_hit_by)}" if r.also_hit_by else ""
            console.print(f"[red]{r.plan.describe()} ({hit}{also}):[/]")
            for problem in problems:
                console.print(f"    {problem}")
    console.print(machine_line(machine))


def main(argv: list[str] | None = None) -> int:
    return run_async(chaos(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
