"""Shared by every benchmark: the real stack, percentiles, machine facts and the JSON result file.

A benchmark module `bench/<name>.py` defines `main(argv) -> int`, accepts `--quick` (tiny sizes,
for the smoke test) and `--results-dir`, prints a rich table and writes `<results-dir>/<name>.json`
via `write_result`. Figures are reported, never asserted: the only hard checks are `checks`
(no notification lost, nothing left unfinished), which the smoke test reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from devstack.stack import AsCaller, Child, dev_user_env
from devstack.temporal_server import TemporalDevServer, find_temporal_cli, free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
console = Console(width=max(140, Console().width))


# --- arguments and results ------------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test's mode)")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where <name>.json goes")
    return p


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks; q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_ms(values: list[float]) -> dict[str, float]:
    """p50/p99/max of durations given in seconds, in milliseconds."""
    return {
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2) if values else float("nan"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _run_text(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def machine_facts() -> dict[str, Any]:
    """What the figures depend on; the load average says how busy the shared machine was."""
    commit = _run_text(["git", "rev-parse", "HEAD"])
    dirty = bool(_run_text(["git", "status", "--porcelain", "--untracked-files=no"]))
    try:
        temporal = _run_text([find_temporal_cli(), "--version"])
    except Exception:
        temporal = ""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_bytes": _ram_bytes(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "temporal_cli": temporal,
        "git_commit": commit,
        "git_dirty": dirty,
        "load_average": list(os.getloadavg()),
    }


def write_result(
    name: str,
    results_dir: Path,
    *,
    quick: bool,
    started: float,
    params: dict[str, Any],
    figures: dict[str, Any],
    headline: dict[str, Any],
    checks: dict[str, bool],
    machine: dict[str, Any],
) -> Path:
    """`<results_dir>/<name>.json`: parameters, figures, the headline the summary prints, checks, machine."""
    results_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(),
        "duration_seconds": round(time.monotonic() - started, 2),
        "quick": quick,
        "params": params,
        "figures": figures,
        "headline": headline,
        "checks": checks,
        "ok": all(checks.values()),
        "machine": {**machine, "load_average_end": list(os.getloadavg())},
    }
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col != columns[0] else "left")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def print_checks(checks: dict[str, bool]) -> None:
    for name, ok in checks.items():
        console.print(f"  {'[green]ok[/]' if ok else '[red]FAILED[/]'}  {name}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_line(m: dict[str, Any]) -> str:
    ram = m.get("ram_bytes") or 0
    return (
        f"{m['cpu_count']} x {m['cpu_model']}, {ram / 2**30:.0f} GiB RAM, Python {m['python']},"
        f" {m['temporal_cli'] or 'temporal ?'}, commit {str(m['git_commit'])[:12]}"
        f"{' (dirty)' if m.get('git_dirty') else ''}, load {m['load_average'][0]:.2f}"
    )


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """asyncio.run with SIGTERM turned into KeyboardInterrupt, so the stack is always stopped."""

    def on_term(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return asyncio.run(main)


# --- the real stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    """A Temporal dev server plus real `selfheal worker` and `selfheal api` processes."""

    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    worker: bool = True
    env_extra: dict[str, str] = field(default_factory=dict)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    #: The bench's own person (an approver): reads need one; the webhook token only posts alerts.
    api_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = 0
    temporal: TemporalDevServer | None = None
    children: list[Child] = field(default_factory=list)
    task_queue: str = "selfheal-bench"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def temporal_address(self) -> str:
        assert self.temporal is not None
        return self.temporal.address

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def pid(self, name: str) -> int:
        proc = self.child(name).proc
        assert proc is not None
        return proc.pid

    def start(self, timeout: float = 90.0) -> None:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.temporal = TemporalDevServer(
            self.root / "temporal.db", port=free_port(), ui_port=None, log_file=logs / "temporal.log"
        )
        self.temporal.start(attempts=3)
        self.port = self.port or free_port()  # a caller may fix it first, to point things at it
        env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
        env.update(
            SELFHEAL_ENV="dev",
            SELFHEAL_DATA_DIR=str(self.root / "data"),
            SELFHEAL_PORT=str(self.port),
            SELFHEAL_WEBHOOK_TOKEN=self.token,
            SELFHEAL_TEMPORAL__ADDRESS=self.temporal.address,
            SELFHEAL_TEMPORAL__TASK_QUEUE=self.task_queue,
            SELFHEAL_TEMPORAL__UI_URL="",
            SELFHEAL_LOG_FORMAT="json",
            **dev_user_env(self.api_token),
            **self.env_extra,
        )
        if self.config:
            path = self.root / "selfheal.yaml"
            path.write_text(yaml.safe_dump(self.config, sort_keys=False))
            env["SELFHEAL_CONFIG"] = str(path)
        exe = [sys.executable, "-m", "selfheal"]
        names = ["worker", "api"] if self.worker else ["api"]
        self.children = [Child(n, [*exe, n], env, logs / f"{n}.log") for n in names]
        for c in self.children:
            c.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in self.children:
                if not c.alive():
                    raise RuntimeError(f"{c.name} exited during start-up:\n{c.log.read_text()[-3000:]}")
            try:
                ready = httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready and (not self.worker or "worker started" in self.child("worker").log.read_text()):
                return
            time.sleep(0.2)
        raise RuntimeError(f"stack not ready within {timeout:.0f}s; see {logs}")

    def assert_alive(self) -> None:
        for c in self.children:
            if not c.alive():
                raise RuntimeError(f"{c.name} died:\n{c.log.read_text()[-3000:]}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by each process of the stack (where a run's CPU went)."""
        pids = {c.name: c.proc.pid for c in self.children if c.proc is not None}
        if self.temporal is not None and self.temporal.proc is not None:
            pids["temporal"] = self.temporal.proc.pid
        pids["bench"] = os.getpid()
        out = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if "worker" in pids:
            # Of the worker's figure, what its finished child processes used (git, sandboxed tests).
            out["worker_children"] = cpu_seconds(pids["worker"], children_only=True)
        return out

    def stop(self) -> None:
        for c in reversed(self.children):
            c.stop()
        if self.temporal is not None:
            self.temporal.stop()

    def http(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url, auth=AsCaller(self.token, self.api_token), timeout=120, **kw
        )


@contextmanager
def running_stack(
    config: dict[str, Any] | None = None, *, worker: bool = True, root: Path | None = None
) -> Iterator[Stack]:
    """A fresh stack in a temp dir (or `root`), stopped on exit whatever happened."""
    with tempfile.TemporaryDirectory(prefix="selfheal-bench-") as tmp:
        stack = Stack(root=root or Path(tmp), config=config or {}, worker=worker)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


def proc_status_kib(pid: int, key: str) -> int | None:
    """A `/proc/<pid>/status` figure in KiB, e.g. VmHWM (peak RSS) or VmRSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int, *, children_only: bool = False) -> float:
    """User + system CPU seconds of a process and its reaped children, from /proc/<pid>/stat
    (`children_only`: just the children's part)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = os.sysconf("SC_CLK_TCK")
    return round(sum(int(f) for f in fields[13 if children_only else 11 : 15]) / ticks, 1)


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after[k] - before.get(k, 0.0), 1) for k in after}


# --- payloads and polling -------------------------------------------------------------------------


def alert(labels: dict[str, str], fingerprint: str, starts_at: str, summary: str = "") -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": summary or f"{labels.get('alertname', '')} firing"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.bench:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def notification(
    group_key: str, alerts: list[dict[str, Any]], group_labels: dict[str, str]
) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) body: one group's current snapshot."""
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "selfheal",
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.bench:9093",
        "alerts": alerts,
    }


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


async def poll_until(
    check: Callable[[], Awaitable[bool]], within: float, interval: float = 0.5, what: str = "condition"
) -> float:
    """Poll `check` until true; returns the monotonic time it first held. Raises on the deadline."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {within:.0f}s")
        await asyncio.sleep(interval)


async def gather_limited(coros: list[Awaitable[Any]], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Awaitable[Any]) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))
