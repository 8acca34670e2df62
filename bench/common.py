"""Shared benchmark helpers: the embedded stack, Alertmanager payloads, percentiles, machine facts, JSON.

Every benchmark runs the product as deployed (a real `temporal server start-dev`, a `selfheal worker`
and a `selfheal api` process, supervised by `selfheal.dev.DevStack`) in a throw-away directory, and
records the machine it ran on next to its figures, because numbers without a machine mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from selfheal.dev import DevStack
from selfheal.devserver import find_temporal_cli, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
#: Wide enough for the tables when piped to a file (rich would otherwise wrap at 80 columns).
console = Console(width=None if sys.stdout.isatty() else 150)


# --- the stack --------------------------------------------------------------------------------------


@dataclass
class BenchStack:
    """A running Temporal dev server + worker + API (real processes) and how to reach them."""

    dev: DevStack
    root: Path

    @property
    def api_url(self) -> str:
        return self.dev.api_url

    @property
    def token(self) -> str:
        return self.dev.token

    @property
    def temporal_address(self) -> str:
        return self.dev.temporal.address

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def pid(self, name: str) -> int:
        child = next(c for c in self.dev.children if c.name == name)
        if child.proc is None or child.proc.poll() is not None:
            raise RuntimeError(f"{name} is not running; see {child.log}")
        return child.proc.pid

    def check_alive(self) -> None:
        """Fail loudly if a child died mid-benchmark (figures from a half-dead stack are wrong)."""
        for child in self.dev.children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited during the benchmark; see {child.log}")
        if not self.dev.temporal.alive():
            raise RuntimeError("the Temporal dev server exited during the benchmark")


@contextmanager
def embedded_stack(config: dict[str, Any] | None = None, keep: bool = False) -> Iterator[BenchStack]:
    """Start the embedded stack on free ports in a temp dir (no UI); stop it and clean up afterwards."""
    root = Path(tempfile.mkdtemp(prefix="selfheal-bench-"))
    cfg_path = None
    if config is not None:
        cfg_path = root / "selfheal.yaml"
        cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    dev = DevStack(
        root / "data",
        port=free_port(),
        temporal_port=free_port(),
        ui_port=None,  # type: ignore[arg-type]  # headless: the UI is not what we measure
        config=cfg_path,
    )
    try:
        dev.start()
        dev.wait_ready(timeout=120)
        yield BenchStack(dev=dev, root=root)
    finally:
        dev.stop()
        if keep:
            console.print(f"[dim]kept {root}[/]")
        else:
            shutil.rmtree(root, ignore_errors=True)


# --- Alertmanager payloads --------------------------------------------------------------------------


def alert(name: str, fingerprint: str, labels: dict[str, str], starts_at: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} on {labels.get('instance', '?')}", "description": "benchmark"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint,
    }


def notification(group: str, alertname: str, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """A webhook body in Alertmanager 0.25's exact shape for one alert group (a full snapshot)."""
    common = dict(alerts[0]["labels"]) if alerts else {"alertname": alertname}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {
        "receiver": "selfheal",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": alertname, "group": group},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.bench:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}", group="{group}"}}',
        "truncatedAlerts": 0,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# --- figures ----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def rss_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from /proc (VmRSS, VmHWM)."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


# --- machine facts ----------------------------------------------------------------------------------


def _cmd(argv: list[str], cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on, including how busy the (shared) machine was."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    commit = _cmd(["git", "rev-parse", "HEAD"], ROOT)
    dirty = bool(_cmd(["git", "status", "--porcelain", "--untracked-files=no"], ROOT))
    try:
        temporal = _cmd([find_temporal_cli(), "--version"])
    except Exception:
        temporal = ""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "temporal_cli": temporal,
        "git_commit": commit + ("-dirty" if dirty else ""),
        "measured_at": now_iso(),
    }


# --- output -----------------------------------------------------------------------------------------


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measurement")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default bench/results/<name>.json)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data) afterwards")
    return parser


def write_result(
    name: str,
    *,
    params: dict[str, Any],
    results: Any,
    headline: dict[str, Any],
    checks: dict[str, Any],
    machine: dict[str, Any],
    out: Path | None = None,
) -> Path:
    """Write `{benchmark, params, headline, results, checks, machine}`; returns the path."""
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = {**machine, "load_average_after": [round(x, 2) for x in os.getloadavg()]}
    doc = {
        "benchmark": name,
        "params": params,
        "headline": headline,
        "results": results,
        "checks": checks,
        "machine": machine,
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    console.print(f"[dim]wrote {path}[/]")
    return path


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col != columns[0] else "left")
    for row in rows:
        table.add_row(*[fmt(v) for v in row])
    console.print(table)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_machine(machine: dict[str, Any]) -> None:
    console.print(
        f"[dim]{machine['cpu_count']} x {machine['cpu_model']}, {machine['ram_gib']} GiB RAM, "
        f"Python {machine['python']}, {machine['temporal_cli']}, commit {machine['git_commit'][:12]}, "
        f"load {machine['load_average']}[/]"
    )


def fail(message: str) -> None:
    """A failed correctness check: say it on stderr; the benchmark then exits 1 after writing JSON."""
    print(f"CHECK FAILED: {message}", file=sys.stderr)


def elapsed(start: float) -> float:
    return time.perf_counter() - start
