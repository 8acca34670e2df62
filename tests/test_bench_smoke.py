"""Each benchmark's quick mode runs end to end and writes JSON of the agreed shape.

Shape and correctness only (nothing lost, one incident per group, every fix landed): timing
figures are measured by `make bench`, never asserted here.
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

ROOT = Path(__file__).resolve().parent.parent
PYTHON = os.path.realpath(sys.executable)
MACHINE_KEYS = {"cpu_count", "cpu_model", "ram_gib", "python", "temporal_cli", "git_commit", "load_average"}


def _ingest(doc: dict[str, Any]) -> None:
    for level in doc["results"]:
        api, bare = level["api"], level["bare"]
        assert api["accepted"] == api["counted_in_views"] == doc["params"]["notifications"]
        assert bare["signals_in_histories"] == doc["params"]["notifications"]
        assert api["per_second"] > 0 and bare["per_second"] > 0 and level["ratio"] > 0
        assert {"p50_ms", "p99_ms"} <= api.keys() and {"p50_ms", "p99_ms"} <= bare.keys()
    assert [r["senders"] for r in doc["results"]] == doc["params"]["concurrency"]


def _alert_storm(doc: dict[str, Any]) -> None:
    res = doc["results"]
    assert doc["headline"]["incidents"] == doc["params"]["groups"] == res["incidents_listed"]
    assert res["listed_ids_match"] and not res["groups_not_absorbed"]
    assert res["notifications"] == res["notifications_expected"]
    assert res["absorbed_seconds"] is not None


def _concurrency(doc: dict[str, Any]) -> None:
    res = doc["results"]
    n = doc["params"]["incidents"]
    assert res["outcomes"] == {"healed": n} and res["unfinished_count"] == 0
    assert res["fix_commits"] == res["incidents_with_one_fix_commit"] == n
    assert res["worker_peak_rss_mib"] > 0


SPECIFIC = {"ingest": _ingest, "alert_storm": _alert_storm, "concurrency": _concurrency}


@pytest.mark.timeout(400)
@pytest.mark.parametrize("name", discover())
def test_quick_mode_writes_result(name: str, tmp_path: Path) -> None:
    out = tmp_path / f"{name}.json"
    proc = subprocess.run(
        [PYTHON, "-m", f"bench.{name}", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == name
    assert {"params", "headline", "results", "checks", "machine"} <= doc.keys()
    assert doc["params"]["quick"] is True and doc["headline"]
    assert MACHINE_KEYS <= doc["machine"].keys() and doc["machine"]["cpu_count"] >= 1
    assert doc["machine"]["temporal_cli"].startswith("temporal version")
    assert doc["checks"]["problems"] == []
    if name in SPECIFIC:
        SPECIFIC[name](doc)


def test_runner_discovers_every_benchmark_module() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "bench.run", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = proc.stdout.split()
    on_disk = sorted(
        p.stem for p in (ROOT / "bench").glob("*.py") if p.stem not in {"__init__", "common", "run"}
    )
    assert listed == on_disk and {"ingest", "alert_storm", "concurrency"} <= set(listed)
    bad = subprocess.run(
        [PYTHON, "-m", "bench.run", "--only", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "unknown benchmark" in bad.stderr
