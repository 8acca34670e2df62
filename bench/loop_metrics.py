"""How long a /metrics scrape spends aggregating the incident store, by store size.

    .venv/bin/python bench/loop_metrics.py [--incidents 1000 10000 50000] [--url sqlite:///…]

Prints one line per size: incidents, playbook runs, median and max scrape time of the loop
collector (the SQL aggregates plus exposition), and the exposition's size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import Session

from selfheal.incident_store import ClosedIncident, IncidentStore, PlaybookRun
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--incidents", type=int, nargs="+", default=[1000, 10_000, 50_000])
    parser.add_argument("--url", default=None, help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{Path(tmp) / 'incidents.db'}"
        store = IncidentStore(url)
        have = runs = 0
        print(f"store {url.split('@')[-1]}")
        for target in sorted(args.incidents):
            runs += fill(store, have, target - have)
            have = target
            collector = LoopCollector(url)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(collector)
            times = []
            size = 0
            for _ in range(args.repeat):
                began = time.perf_counter()
                size = len(generate_latest(registry))
                times.append(time.perf_counter() - began)
            collector.close()
            median_ms = statistics.median(times) * 1000
            print(
                f"incidents {have:>7}  runs {runs:>7}  scrape median {median_ms:7.1f} ms"
                f"  max {max(times) * 1000:7.1f} ms  exposition {size / 1024:6.1f} KiB"
            )
        store.close()


if __name__ == "__main__":
    main()
