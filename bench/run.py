"""Run every benchmark in bench/ (each `bench/<name>.py` with a `main`), then print a summary.

Modules are discovered, not listed, so a new `bench/<name>.py` joins `make bench` by existing.
Each runs in its own interpreter (`python -m bench.<name>`), so one's leftovers cannot skew the next.
"""

from __future__ import annotations

import argparse
import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import RESULTS, console, fmt, print_table

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"common", "run"}


def discover() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(HERE)])
        if not m.ispkg and not m.name.startswith("_") and m.name not in NOT_BENCHMARKS
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for every benchmark")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON results go")
    parser.add_argument("--list", action="store_true", help="print the benchmark names and exit")
    args = parser.parse_args(argv)
    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            print(f"unknown benchmark(s): {', '.join(unknown)} (have: {', '.join(names)})", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted]
    rows = []
    failed = 0
    for name in names:
        out = args.out_dir / f"{name}.json"
        out.unlink(missing_ok=True)
        argv_ = [sys.executable, "-m", f"bench.{name}", "--out", str(out)]
        if args.quick:
            argv_.append("--quick")
        console.rule(f"bench.{name}")
        start = time.perf_counter()
        code = subprocess.run(argv_, check=False).returncode
        minutes = (time.perf_counter() - start) / 60
        failed += code != 0
        headline = ""
        if out.exists():
            doc = json.loads(out.read_text())
            headline = ", ".join(f"{k}={fmt(v)}" for k, v in doc.get("headline", {}).items())
        rows.append([name, "ok" if code == 0 else f"exit {code}", round(minutes, 2), headline or "-"])
    print_table("Benchmarks", ["benchmark", "result", "minutes", "headline"], rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
