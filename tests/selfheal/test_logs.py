"""Worker logs as operators see them: JSON lines in production, readable lines in dev.

The worker runs as `python -m selfheal worker` against a real Temporal dev server; the API runs
in-process on the same task queue. We post an alert, wait for the escalation, stop the worker
with SIGTERM and read everything it wrote to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.stack import AsCaller
from tests.support.app import DEFAULT_USER, ApiServer, make_settings, user_token
from tests.support.payloads import simple

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def temporal(temporal_address: str) -> str:
    """The session's Temporal server; each test isolates itself with its own task queue."""
    return temporal_address


def logged_lines(run: Run) -> list[str]:
    """The worker's log lines; it must have stopped cleanly on SIGTERM (exit 0)."""
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines, "the worker logged nothing"
    return lines


@dataclass
class Run:
    incident_id: str
    ticket_key: str
    task_queue: str
    returncode: int
    stderr: str


def run_worker_through_an_incident(temporal: str, tmp_path: Path, env_mode: str) -> Run:
    queue = "tq-log-" + uuid.uuid4().hex[:10]
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    env.update(
        SELFHEAL_ENV=env_mode,
        SELFHEAL_TEMPORAL__ADDRESS=temporal,
        SELFHEAL_TEMPORAL__TASK_QUEUE=queue,
        SELFHEAL_DATA_DIR=str(data_dir),
    )
    err_path = tmp_path / "worker.stderr"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "selfheal", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:
        settings = make_settings(temporal, data_dir, env=env_mode, temporal={"task_queue": queue})
        with ApiServer(settings) as api:
            caller = AsCaller(api.webhook_token, user_token(DEFAULT_USER))
            with httpx.Client(base_url=api.url, auth=caller, timeout=30) as http:
                # An alertname no playbook knows: the worker runs with the default library.
                resp = http.post("/api/v1/alerts", json=simple(alertname="SelfhealLoggingProbe"))
                assert resp.status_code == 202, resp.text
                incident_id = resp.json()["incident_id"]
                view = _wait_awaiting(http, incident_id, proc, err_path)
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return Run(incident_id, view["ticket"]["key"], queue, returncode, err_path.read_text())


def _wait_awaiting(
    http: httpx.Client, incident_id: str, proc: subprocess.Popen[bytes], err_path: Path
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"worker exited {proc.returncode}:\n{err_path.read_text()}"
        resp = http.get(f"/api/v1/incidents/{incident_id}")
        if resp.status_code == 200:
            last = resp.json()
            if last["stage"] == "awaiting_decision":
                return last
        time.sleep(0.1)
    raise AssertionError(f"not awaiting_decision within 30s: {last}\n{err_path.read_text()}")


def test_production_worker_logs_json_lines_with_incident_id(temporal: str, tmp_path: Path) -> None:
    run = run_worker_through_an_incident(temporal, tmp_path, "production")
    lines = logged_lines(run)
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(record, dict), line
        assert {"event", "level", "timestamp"} <= record.keys(), line
        records.append(record)

    started = [r for r in records if r["event"] == "worker started"]
    assert len(started) == 1 and started[0]["task_queue"] == run.task_queue
    assert started[0]["component"] == "worker"

    # Every line that mentions the incident carries it as a field, and there are such lines
    # from both the ticket activity and the workflow logger.
    about = [(line, r) for line, r in zip(lines, records, strict=True) if run.incident_id in line]
    assert len(about) >= 2, lines
    for line, record in about:
        assert record.get("incident_id") == run.incident_id, line
    ticket_lines = [r for _, r in about if r["event"] == "ticket ready"]
    assert ticket_lines and ticket_lines[0]["key"] == run.ticket_key
    assert any(r["logger"].startswith("temporalio.workflow") for _, r in about), about


def test_dev_worker_logs_human_readable_lines(temporal: str, tmp_path: Path) -> None:
    run = run_worker_through_an_incident(temporal, tmp_path, "dev")
    lines = logged_lines(run)
    for line in lines:
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        assert not isinstance(parsed, dict), f"JSON line in dev mode: {line!r}"

    started = [line for line in lines if "worker started" in line]
    assert len(started) == 1 and f"task_queue={run.task_queue}" in started[0]
    ticket = [line for line in lines if "ticket ready" in line]
    assert ticket and f"incident_id={run.incident_id}" in ticket[0] and f"key={run.ticket_key}" in ticket[0]


def test_secrets_in_logged_values_are_redacted() -> None:
    """An error text quoting a URL with credentials or a token is redacted before it is written."""
    code = (
        "import structlog, logging\n"
        "from selfheal.settings import Settings\n"
        "from selfheal.logs import configure_logging\n"
        "configure_logging(Settings(log_format='json'))\n"
        "structlog.get_logger('t').warning('call failed', error='GET https://bot:hunter22@jira.example/x"
        " password=pa55word', header='Authorization: Bearer abcdef123456789')\n"
        "logging.getLogger('lib').error('token=t0ken-value-1 in a stdlib line')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    assert len(lines) == 2, out.stderr
    text = out.stderr
    for secret in ("hunter22", "pa55word", "abcdef123456789", "t0ken-value-1"):
        assert secret not in text, text
    assert "[REDACTED]" in lines[0]["error"] and "jira.example" in lines[0]["error"]
