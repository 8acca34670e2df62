"""How long a /metrics scrape spends aggregating the incident store, by store size.

    .venv/bin/python -m bench.loop_metrics [--quick] [--incidents 1000 10000 50000] [--url sqlite:///…]

Prints one row per size: incidents, playbook runs, median and max scrape time of the loop
collector (the SQL aggregates plus exposition), and the exposition's size; writes
bench/results/loop_metrics.json.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import Session

from bench import common
from connectors.incident_store import ClosedIncident, IncidentStore, PlaybookRun
from selfheal.loop_metrics import LoopCollector

OUTCOMES = ["healed", "healed_after_approval", "approved", "rejected", "resolved"]
CATEGORIES = ["capacity", "availability", "bad-deploy", "certificates", "disk", "feature-flag", "novel"]
RESULTS = ["healed", "rolled_back", "failed", "skipped", "blocked"]


def fill(store: IncidentStore, start: int, count: int) -> int:
    """Bulk rows shaped like recorded incidents (record() per row would time the writes instead)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows: list[object] = []
    runs = 0
    for i in range(start, start + count):
        outcome = OUTCOMES[i % len(OUTCOMES)]
        healed = outcome.startswith("healed")
        category = CATEGORIES[i % len(CATEGORIES)]
        rows.append(
            ClosedIncident(
                id=f"inc-{i}",
                title=f"incident {i}",
                outcome=outcome,
                category=category,
                playbook="" if category == "novel" else f"pb-{i % 20}",
                rollbacks=1 if i % 11 == 0 else 0,
                opened_at=t0,
                closed_at=t0 + timedelta(hours=1),
                alert_started_at=t0,
                alert_to_deployed_seconds=float(60 + i % 3000) if healed else None,
                alert_to_verified_seconds=float(120 + i % 5000) if healed else None,
                investigation_seconds=float(i % 90) / 3 if i % 4 else None,
            )
        )
        if category != "novel":
            for seq in range(1 + i % 2):
                rows.append(
                    PlaybookRun(
                        incident_id=f"inc-{i}",
                        seq=seq,
                        playbook=f"pb-{i % 20}",
                        result=RESULTS[(i + seq) % len(RESULTS)],
                        seconds=30.0,
                    )
                )
                runs += 1
    with Session(store.engine) as session, session.begin():
        session.add_all(rows)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = common.parser(__doc__)
    parser.add_argument("--incidents", type=int, nargs="+", default=None)
    parser.add_argument("--url", default=None, help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args(argv)
    started = time.monotonic()
    machine = common.machine_facts()
    sizes = sorted(args.incidents or ([100, 1000] if args.quick else [1000, 10_000, 50_000]))
    repeat = args.repeat or (3 if args.quick else 7)
    rows: list[list[object]] = []
    points: list[dict[str, object]] = []
    counted_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'incidents.db'}"
        store = IncidentStore(url)
        have = runs = 0
        for target in sizes:
            runs += fill(store, have, target - have)
            have = target
            collector = LoopCollector(url)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(collector)
            times = []
            text = b""
            for _ in range(repeat):
                began = time.perf_counter()
                text = generate_latest(registry)
                times.append(time.perf_counter() - began)
            collector.close()
            # Every incident filled in is counted in the exposition's outcome counter: nothing dropped.
            total = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.decode().splitlines()
                if line.startswith("selfheal_incidents_total{")
            )
            counted_ok = counted_ok and int(total) == have
            point = {
                "incidents": have,
                "playbook_runs": runs,
                "scrape_median_ms": round(statistics.median(times) * 1000, 2),
                "scrape_max_ms": round(max(times) * 1000, 2),
                "exposition_kib": round(len(text) / 1024, 1),
                "incidents_counted": int(total),
            }
            points.append(point)
            rows.append(
                [have, runs, point["scrape_median_ms"], point["scrape_max_ms"], point["exposition_kib"]]
            )
        store.close()
    common.print_table(
        f"/metrics loop collector scrape time by store size ({url.split('@')[-1].split(':')[0]})",
        ["incidents", "playbook runs", "median ms", "max ms", "exposition KiB"],
        rows,
    )
    checks = {"every stored incident counted in the exposition": counted_ok}
    common.print_checks(checks)
    common.console.print(common.machine_line(machine))
    largest = points[-1]
    common.write_result(
        "loop_metrics",
        args.results_dir,
        quick=args.quick,
        started=started,
        params={"incidents": sizes, "repeat": repeat, "store": url.split("@")[-1].split(":")[0]},
        figures={"points": points},
        headline={f"{largest['incidents']} incidents": f"scrape median {largest['scrape_median_ms']} ms"},
        checks=checks,
        machine=machine,
    )
    return 0 if counted_ok else 1


if __name__ == "__main__":
    sys.exit(main())
