"""An incident started by the code before the layering refactor finishes on the code after it.

The pre-refactor tree (commit e8f9fa7, main before issue 10) is extracted from this clone with
`git archive` and its own worker runs as a subprocess (PYTHONPATH = that tree, same venv) against
a real Temporal dev server. An alert no playbook knows escalates, so the incident waits for a
decision in that worker's hands. The old worker stops, a worker of the current tree starts, and an
approval through the API closes the incident: the new workflow code replays the old history
(module moves, the rules split and the settings changes included) and the ticket is the same one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from connectors.local_tracker import LocalTracker
from connectors.temporal import connect
from models import ids
from tests.support.app import ApiServer, make_settings, wait_for_incident
from tests.support.payloads import simple

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
#: main before issue 10 ("One-way layers").
BEFORE = "e8f9fa7"


def _extract_before(dest: Path) -> Path:
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{BEFORE}^{{commit}}"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"commit {BEFORE} (the pre-refactor code) is not in this clone (shallow or exported)")
    dest.mkdir()
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", BEFORE], stdout=subprocess.PIPE)
    assert archive.stdout is not None
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    assert archive.wait() == 0
    return dest


@contextmanager
def worker(tree: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`selfheal worker` of `tree` (first on the path, ahead of the venv's editable install)."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from selfheal.cli import main; main()", "worker"],
            cwd=tree,
            env={**env, "PYTHONPATH": str(tree)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


async def _started(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until the worker logs that it polls (a condition with a deadline)."""
    deadline = time.monotonic() + timeout
    while "worker started" not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"worker exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"worker not started in {timeout}s:\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, log.read_text()[-3000:]


async def test_incident_started_before_the_refactor_closes_after_it(
    temporal_address: str, tmp_path: Path
) -> None:
    old_tree = _extract_before(tmp_path / "before")
    queue = "tq-upgrade-" + uuid.uuid4().hex[:10]
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_") and k != "PYTHONPATH"}
    env.update(
        SELFHEAL_ENV="dev",
        SELFHEAL_TEMPORAL__ADDRESS=temporal_address,
        SELFHEAL_TEMPORAL__TASK_QUEUE=queue,
        # A stopped worker's sticky queue hands the workflow on to the new worker after this long.
        SELFHEAL_TEMPORAL__STICKY_TIMEOUT_SECONDS="1",
        SELFHEAL_DATA_DIR=str(data_dir),
        SELFHEAL_INCIDENT__ACTIVITY_TIMEOUT_SECONDS="10",
    )
    settings = make_settings(temporal_address, data_dir, temporal={"task_queue": queue})
    old_log, new_log = tmp_path / "worker-before.log", tmp_path / "worker-after.log"

    with ApiServer(settings) as api, worker(old_tree, env, old_log) as old:
        async with api.client() as http:
            resp = await http.post("/api/v1/alerts", json=simple(alertname="SelfhealUpgradeProbe"))
            assert resp.status_code == 202, resp.text
            incident_id = resp.json()["incident_id"]
            before = await wait_for_incident(
                http, incident_id, lambda v: v["stage"] == "awaiting_decision", timeout=90
            )
            assert old.poll() is None, old_log.read_text()[-3000:]
            _stop(old, old_log)

            with worker(ROOT, env, new_log) as new:
                await _started(new, new_log)
                resp = await http.post(
                    f"/api/v1/incidents/{incident_id}/decision",
                    json={"decision": "approve", "comment": "after the upgrade"},
                )
                assert resp.status_code == 200, (resp.text, new_log.read_text()[-3000:])
                view = await wait_for_incident(
                    http, incident_id, lambda v: v["stage"] == "closed", timeout=90
                )
                _stop(new, new_log)

    assert view["outcome"] == "approved", view["timeline"]
    assert view["ticket"]["key"] == before["ticket"]["key"]
    assert LocalTracker(settings.local_db_path).count() == 1
    comments = LocalTracker(settings.local_db_path).get(view["ticket"]["key"])["comments"]
    assert any(
        "Approved by oncall via API token" in c["body"] and "after the upgrade" in c["body"] for c in comments
    )

    # Both workers worked on the one run: the old one up to the escalation, the new one to the end.
    client = await connect(settings.temporal)
    gid = ids.parse_incident_id(incident_id)
    assert gid is not None
    history = await client.get_workflow_handle(ids.workflow_id_for_group(gid)).fetch_history()
    workers = [
        e.workflow_task_completed_event_attributes.identity.split("@")[0]
        for e in history.events
        if e.HasField("workflow_task_completed_event_attributes")
    ]
    assert workers[0] == str(old.pid) and workers[-1] == str(new.pid), workers
    assert history.events[-1].HasField("workflow_execution_completed_event_attributes")
