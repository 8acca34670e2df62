"""Run every benchmark module in bench/ (discovered, not listed) and print a summary.

    .venv/bin/python -m bench.run [--quick] [--only ingest alert_storm] [--results-dir DIR]

Each benchmark runs as its own `python -m bench.<name>` process (its own stack and memory), then
its `<name>.json` is read back for the summary. Exits non-zero when a benchmark failed or one of
its checks (e.g. no notification lost) did not hold; figures themselves are never judged.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import bench
from bench import common

NOT_BENCHMARKS = {"common", "run"}


def discover() -> list[str]:
    """Every module of the bench package except the shared helpers and this runner."""
    return sorted(
        m.name
        for m in pkgutil.iter_modules(bench.__path__)
        if not m.ispkg and m.name not in NOT_BENCHMARKS and not m.name.startswith("_")
    )


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--only", nargs="+", help="run only these benchmarks")
    args = p.parse_args(argv)
    names = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"error: --only: unknown benchmark(s) {', '.join(unknown)}; have {', '.join(names)}")
            return 2
        names = [n for n in names if n in args.only]
    rows: list[list[object]] = []
    failed = 0
    for name in names:
        common.console.rule(f"bench.{name}")
        argv_ = [sys.executable, "-m", f"bench.{name}", "--results-dir", str(args.results_dir)]
        if args.quick:
            argv_.append("--quick")
        result_path = Path(args.results_dir) / f"{name}.json"
        result_path.unlink(missing_ok=True)
        began = time.monotonic()
        code = subprocess.run(argv_, cwd=common.ROOT, check=False).returncode
        took = time.monotonic() - began
        doc = json.loads(result_path.read_text()) if result_path.exists() else None
        if code != 0 or doc is None or not doc.get("ok"):
            failed += 1
        status = "ok" if code == 0 and doc and doc.get("ok") else f"FAILED (exit {code})"
        headline = "; ".join(f"{k}: {v}" for k, v in (doc or {}).get("headline", {}).items())
        rows.append([name, status, f"{took:.0f}s", headline or "(no result file)"])
    common.print_table(
        "Benchmarks" + (" (quick)" if args.quick else ""), ["benchmark", "status", "took", "headline"], rows
    )
    common.console.print(common.machine_line(common.machine_facts()))
    common.console.print(f"results in {args.results_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
