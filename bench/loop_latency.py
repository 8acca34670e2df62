"""How long the real loop takes: webhook receipt → fix deployed → verified, per known demo fault.

    .venv/bin/python -m bench.loop_latency [--rounds 3] [--scenario bad-config ...] [--quick]

Each round starts a fresh demo stack (shop under load, Prometheus, Alertmanager, Temporal dev
server, selfheal worker and API; fresh, so playbook cooldowns never block a run) and injects each
known fault in turn. Prints one row per scenario (median, min and max over the rounds) beside the
settings that bound the figures: scrape and evaluation intervals, rule `for:`, the rate window,
Alertmanager's group_wait/group_interval, the verify poll and each playbook's `hold_for`; writes
<results-dir>/loop_latency.json (`--quick`: one round of the first fault).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import common
from demo.observability import Timings
from demo.scenarios import SCENARIOS, Runner, ScenarioResult
from demo.stack import PLAYBOOKS_DIR, DemoStack

KNOWN = [k for k, s in SCENARIOS.items() if s.expect == "healed"]
METRICS = {
    "fault_to_alert_s": ("fault_at", "alert_at"),
    "alert_to_deployed_s": ("alert_at", "deployed_at"),
    "alert_to_verified_s": ("alert_at", "verified_at"),
    "fault_to_verified_s": ("fault_at", "verified_at"),
}


def hold_for(playbook: str) -> str:
    for path in PLAYBOOKS_DIR.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        if doc.get("name") == playbook:
            return str(doc["verify"].get("hold_for", "1m"))
    return "?"


def summarise(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenario", action="append", choices=KNOWN, help="default: every known fault")
    args = parser.parse_args(argv)
    keys: list[str] = args.scenario or KNOWN
    if args.quick:
        args.rounds, keys = 1, keys[:1]
    machine = common.machine_facts()
    timings = Timings()
    runs: list[dict[str, Any]] = []
    by_scenario: dict[str, list[ScenarioResult]] = {k: [] for k in keys}
    started = time.monotonic()
    for round_no in range(1, args.rounds + 1):
        with (
            tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp,
            DemoStack(Path(tmp), timings=timings) as stack,
        ):
            runner = Runner(stack)
            for key in keys:
                res = runner.run(SCENARIOS[key])
                by_scenario[key].append(res)
                runs.append({"round": round_no, **res.as_dict()})
                status = "ok" if res.ok else f"FAILED: {res.reason}"
                took = res.seconds("alert_at", "verified_at")
                print(f"round {round_no} {key}: alert→verified {took}s {status}", file=sys.stderr)
    holds = {k: hold_for(SCENARIOS[k].playbook or "") for k in keys}
    settings: dict[str, Any] = {**timings.as_dict(), "verify_poll_seconds": 0.5, "hold_for": holds}
    summary: dict[str, Any] = {}
    for key, results in by_scenario.items():
        summary[key] = {
            "ok": sum(r.ok for r in results),
            "rounds": len(results),
            **{
                name: summarise([v for r in results if (v := r.seconds(a, b)) is not None])
                for name, (a, b) in METRICS.items()
            },
        }
    header = (
        f"{'scenario':<17} {'ok':>5} {'fault→alert':>12} {'alert→deployed':>15} {'alert→verified':>15}"
        f" {'fault→verified':>15} {'hold_for':>9}"
    )
    t = timings
    print(
        f"loop latency, median (min-max) over {args.rounds} round(s); scrape {t.scrape_interval},"
        f" eval {t.evaluation_interval}, rule for {t.rule_for}, rate window {t.rate_window},"
        f" resend delay {t.resend_delay}, group_wait {t.group_wait},"
        f" group_interval {t.group_interval}, verify poll 0.5s"
    )
    print(header)
    for key, s in summary.items():

        def cell(name: str, s: dict[str, Any] = s) -> str:
            v = s[name]
            return "—" if v is None else f"{v['median']:.1f} ({v['min']:.1f}-{v['max']:.1f})"

        cells = [cell(n) for n in METRICS]
        print(
            f"{key:<17} {s['ok']:>2}/{s['rounds']:<2} {cells[0]:>12} {cells[1]:>15} {cells[2]:>15}"
            f" {cells[3]:>15} {holds[key]:>9}"
        )
    ok = all(r["ok"] for r in runs)
    headline = {
        k: f"alert→verified {s['alert_to_verified_s']['median']:.1f}s" if s["alert_to_verified_s"] else "—"
        for k, s in summary.items()
    }
    path = common.write_result(
        "loop_latency",
        args.results_dir,
        quick=args.quick,
        started=started,
        params={"rounds": args.rounds, "scenarios": keys, "settings": settings},
        figures={"summary": summary, "runs": runs},
        headline=headline,
        checks={
            "every scenario healed": ok,
            "one result per round and scenario": len(runs) == args.rounds * len(keys),
        },
        machine=machine,
    )
    print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
