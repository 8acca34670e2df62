"""Every benchmark runs in its quick mode and writes a result with its figures and no loss.

The runner is the venv interpreter itself (sys.executable, not its realpath): the benchmarks
import selfheal and start `selfheal api` / `selfheal worker` from it.

Only shape and no-loss are checked here (never timing thresholds): the figures themselves are
for people to read in bench/results/*.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.run import discover

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
MACHINE_KEYS = {"cpu_count", "cpu_model", "ram_bytes", "python", "temporal_cli", "git_commit"}
#: The figures each benchmark must report (benchmarks added later are checked for the common shape).
FIGURES: dict[str, set[str]] = {
    "ingest": {"levels", "absorption"},
    "alert_storm": {"notifications", "absorb_seconds_from_first_post", "incidents_listed", "post_latency"},
    "concurrency": {"completion_seconds", "worker_peak_rss_mib", "fix_commits", "unfinished"},
    "loop_metrics": {"points"},
    "loop_latency": {"summary", "runs"},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`python -m bench.run --quick` once, into a temp results dir (never the real one)."""
    out = tmp_path_factory.mktemp("bench-results")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--results-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    return out, proc


def test_runner_discovers_the_benchmarks() -> None:
    names = discover()
    assert {"ingest", "alert_storm", "concurrency", "loop_metrics", "loop_latency"} <= set(names)
    assert "common" not in names and "run" not in names


def test_runner_succeeds_and_summarises_every_benchmark(results: tuple[Path, Any]) -> None:
    out, proc = results
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    for name in discover():
        assert name in proc.stdout, f"summary lacks {name}"
        assert (out / f"{name}.json").exists(), name


@pytest.mark.parametrize("name", discover())
def test_result_has_figures_machine_and_no_loss(results: tuple[Path, Any], name: str) -> None:
    out, _ = results
    path = out / f"{name}.json"
    assert path.exists(), f"bench.{name} wrote no result"
    doc = json.loads(path.read_text())
    assert doc["benchmark"] == name and doc["quick"] is True
    assert MACHINE_KEYS <= doc["machine"].keys(), doc["machine"]
    assert doc["machine"]["cpu_count"] >= 1 and doc["machine"]["git_commit"]
    assert doc["figures"] and doc["headline"], doc
    assert FIGURES.get(name, set()) <= doc["figures"].keys(), doc["figures"].keys()
    assert doc["checks"], "a benchmark states what it checked (e.g. nothing lost)"
    failed = [check for check, ok in doc["checks"].items() if not ok]
    assert not failed and doc["ok"] is True, failed


def test_ingest_lost_nothing_at_every_sender_level(results: tuple[Path, Any]) -> None:
    doc = json.loads((results[0] / "ingest.json").read_text())
    levels = doc["figures"]["levels"]
    assert [lv["senders"] for lv in levels] == [1, 10, 100]
    for lv in levels:
        assert lv["api"]["errors"] == 0 and lv["bare_signal_with_start"]["errors"] == 0
        assert lv["api"]["per_second"] > 0 and lv["bare_signal_with_start"]["per_second"] > 0
    assert doc["figures"]["absorption"]["lost"] == 0
    assert doc["figures"]["absorption"]["incidents"] == sum(lv["groups"] for lv in levels)


def test_alert_storm_one_incident_per_group(results: tuple[Path, Any]) -> None:
    doc = json.loads((results[0] / "alert_storm.json").read_text())
    assert doc["figures"]["incidents_listed"] == doc["params"]["groups"]
    assert doc["figures"]["alerts_held_in_views"] == doc["params"]["alerts"]


def test_concurrency_every_incident_healed_with_one_fix_commit(results: tuple[Path, Any]) -> None:
    doc = json.loads((results[0] / "concurrency.json").read_text())
    n = doc["params"]["incidents"]
    assert doc["figures"]["outcomes"] == {"healed": n}
    assert doc["figures"]["fix_commits"] == n and doc["figures"]["unfinished"] == 0
    assert doc["figures"]["worker_peak_rss_mib"] > 0
