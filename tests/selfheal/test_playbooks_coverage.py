"""`selfheal playbooks coverage`: episodes counted once, shares, heartbeats left out, diagnose at the
episode's start against a real Prometheus, and one line naming file, line and field for bad input."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from connectors.prometheus import PrometheusClient
from demo.observability import prometheus_server
from devstack.temporal_server import free_port
from selfheal.playbooks_cli import playbooks_app
from tests.support.metric_target import MetricTarget

RESTART = """\
apiVersion: selfheal/v1
kind: Playbook
name: restart-unit
description: A unit stopped; restart it.
match:
  alertname: UnitDown
  matchers: ['unit=~".+"']
target: "{{ params.unit }}"
params:
  unit: {from: label, key: unit, pattern: '^[a-z]+$'}
diagnose:
  - name: still down
    query: max(cov_unit_down{unit="{{ params.unit }}"})
    condition: "== 1"
policy: {mode: approve}
fix:
  - name: restart
    command: {argv: [systemctl, restart, "{{ params.unit }}"]}
"""
SUGGEST = """\
apiVersion: selfheal/v1
kind: Playbook
name: disk-suggest
description: A disk fills; only propose a cleanup.
match:
  alertname: DiskFull
target: "{{ params.host }}"
params:
  host: {from: label, key: instance, pattern: '^[a-z0-9.-]+$'}
policy: {mode: suggest}
fix:
  - name: prune
    command: {argv: [ssh, "{{ params.host }}", docker, image, prune, -f]}
"""
T1 = datetime(2026, 3, 5, 22, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No SELFHEAL_* from the environment; an empty settings file tests may extend."""
    for key in list(os.environ):
        if key.startswith("SELFHEAL_"):
            monkeypatch.delenv(key)
    path = tmp_path / "selfheal.yaml"
    path.write_text("{}\n")
    monkeypatch.setenv("SELFHEAL_CONFIG", str(path))
    yield path


@pytest.fixture
def playbook_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "playbooks"
    directory.mkdir()
    (directory / "restart.yaml").write_text(RESTART)
    (directory / "disk.yaml").write_text(SUGGEST)
    return directory


def alert(
    name: str,
    fingerprint: str,
    starts: datetime = T1,
    status: str = "firing",
    severity: str = "warning",
    **labels: str,
) -> dict[str, Any]:
    """One alert as Alertmanager sends it (a firing alert's endsAt is the zero time)."""
    ends = "0001-01-01T00:00:00Z" if status == "firing" else (starts + timedelta(minutes=9)).isoformat()
    return {
        "status": status,
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {"summary": f"{name} is firing"},
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": ends,
        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def body(*alerts: dict[str, Any], receiver: str = "selfheal") -> dict[str, Any]:
    """A webhook v4 body, every documented field present."""
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    common = {"alertname": alerts[0]["labels"]["alertname"]}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="' + common["alertname"] + '"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": common,
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": list(alerts),
    }


def jsonl(path: Path, *bodies: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    return path


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(playbooks_app, ["coverage", *args], input=stdin)


def coverage_json(*args: str, stdin: str | None = None) -> dict[str, Any]:
    result = run(*args, "--json", stdin=stdin)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_a_webhook_log_counts_each_episode_once(tmp_path: Path, playbook_dir: Path) -> None:
    """Re-sends every group_interval, the resolve, a second receiver and an HA peer: one episode;
    the same alert firing again later (new startsAt) is a second one; heartbeats are left out."""
    nginx = alert("UnitDown", "a1", unit="nginx")
    log = jsonl(
        tmp_path / "webhooks.jsonl",
        body(nginx),
        body(nginx, alert("DiskFull", "d1", instance="db-1")),  # group_interval re-send, a new alert
        body(nginx, receiver="pager"),  # the same episode through another receiver
        body({**nginx, "status": "resolved", "endsAt": "2026-03-05T22:09:00Z"}),
        body(alert("UnitDown", "a1", T1 + timedelta(hours=2), unit="nginx")),  # fires again: new episode
        body(alert("UnitDown", "a2", unit="Not-Valid")),  # param pattern refuses it: unmatched
        body(alert("DiskFull", "d2", T1, "resolved", instance="db-2")),  # only its resolve was logged
        body(alert("Mystery", "m1", severity="critical")),
        *[body(alert("Watchdog", "w1", severity="none")) for _ in range(5)],
        body(alert("InfoInhibitor", "i1", severity="none")),
    )
    result = run(str(log), "--playbooks", str(playbook_dir), "--no-library")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "read 14 webhook bodies, 15 alerts: 8 episodes (fingerprint + startsAt)"
    assert lines[1].split() == ["alertname", "severity", "episodes", "fixable", "suggest-only", "unmatched"]
    rows = [line.split() for line in lines[2:] if not line.startswith((" ", "coverage:"))]
    assert rows == [
        ["UnitDown", "warning", "3", "2", "0", "1"],
        ["DiskFull", "warning", "2", "0", "2", "0"],
        ["Mystery", "critical", "1", "0", "0", "1"],
        ["InfoInhibitor", "none", "1", "(excluded)"],
        ["Watchdog", "none", "1", "(excluded)"],
    ]
    why = "restart-unit: param unit: value 'Not-Valid' does not match ^[a-z]+$"
    assert f"    most common reason nothing matched (1): {why}" in lines
    assert sum("most common reason" in line for line in lines) == 1  # no playbook knows Mystery
    assert lines[-1] == "coverage: 6 episodes, 33.3% fixable (2), 33.3% suggest-only (2), 33.3% unmatched (2)"


def test_one_body_an_array_and_stdin(tmp_path: Path, playbook_dir: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(body(alert("UnitDown", "a1", unit="nginx")), indent=2))
    array = tmp_path / "array.json"
    array.write_text(
        json.dumps(
            [body(alert("UnitDown", "a1", unit="nginx")), body(alert("DiskFull", "d1", instance="db-1"))],
            indent=2,
        )
    )
    stdin = json.dumps(body(alert("Mystery", "m1")))
    data = coverage_json(str(one), str(array), "-", "--dir", str(playbook_dir), "--no-library", stdin=stdin)
    assert data["input"] == {"bodies": 4, "alerts": 4, "episodes": 3, "truncated_alerts": 0}
    assert data["summary"] == {
        "episodes": 3,
        "excluded": 0,
        "fixable": 1,
        "fixable_percent": 33.3,
        "suggest_only": 1,
        "suggest_only_percent": 33.3,
        "unmatched": 1,
        "unmatched_percent": 33.3,
    }


def test_json_shape(tmp_path: Path, playbook_dir: Path) -> None:
    log = jsonl(
        tmp_path / "log.jsonl",
        body(alert("UnitDown", "a1", unit="nginx"), alert("UnitDown", "a2", unit="BAD")),
        {**body(alert("Watchdog", "w1", severity="none")), "truncatedAlerts": 3},
    )
    data = coverage_json(str(log), "--playbooks", str(playbook_dir), "--no-library")
    assert data["diagnose"] is None
    assert data["input"]["truncated_alerts"] == 3
    assert data["rows"] == [
        {
            "alertname": "UnitDown",
            "severity": "warning",
            "excluded": False,
            "episodes": 2,
            "fixable": 1,
            "suggest_only": 0,
            "unmatched": 1,
            "playbooks": {"restart-unit": 1},
            "unmatched_reasons": [
                {"reason": "restart-unit: param unit: value 'BAD' does not match ^[a-z]+$", "episodes": 1}
            ],
            "diagnose": None,
        },
        {
            "alertname": "Watchdog",
            "severity": "none",
            "excluded": True,
            "episodes": 1,
            "fixable": 0,
            "suggest_only": 0,
            "unmatched": 0,
            "playbooks": {},
            "unmatched_reasons": [],
            "diagnose": None,
        },
    ]
    assert data["summary"]["episodes"] == 2
    assert data["summary"]["excluded"] == 1


def test_only_heartbeats_is_zero_episodes(tmp_path: Path) -> None:
    log = jsonl(tmp_path / "log.jsonl", body(alert("Watchdog", "w1", severity="none")))
    result = run(str(log), "--no-library")
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.splitlines()[-1] == "coverage: 0 episodes (Watchdog and InfoInhibitor are not counted)"
    )


def _missing_fingerprint(tmp_path: Path) -> tuple[Path, str]:
    good = body(alert("UnitDown", "a1", unit="nginx"))
    bad = body(alert("UnitDown", "a2", unit="nginx"))
    del bad["alerts"][0]["fingerprint"]
    path = jsonl(tmp_path / "log.jsonl", good, good, bad)
    return path, f"{path}:3: not an Alertmanager webhook body: alerts.0.fingerprint: Field required"


def _not_json(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(body(alert("UnitDown", "a1"))) + '\n{"version": "4",\n')
    return path, f"{path}:3: invalid JSON: Expecting property name enclosed in double quotes (column 1)"


def _array_element(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "bodies.json"
    good = json.dumps(body(alert("UnitDown", "a1")))
    path.write_text(f'[\n{good},\n{good},\n  {{"version": "3"}}\n]\n')
    return path, f"{path}:4: not an Alertmanager webhook body: [2].version: Input should be '4'"


def _not_an_object(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "bodies.json"
    path.write_text('[\n  "firing"\n]')
    return path, f"{path}:2: [0]: expected a webhook body (a JSON object), got str"


def _bad_status(tmp_path: Path) -> tuple[Path, str]:
    broken = body(alert("UnitDown", "a1"))
    broken["alerts"][0]["status"] = "pending"
    path = jsonl(tmp_path / "log.jsonl", broken)
    return (
        path,
        f"{path}:1: not an Alertmanager webhook body: alerts.0.status:"
        " Input should be 'firing' or 'resolved'",
    )


def _unreadable(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "missing.jsonl"
    return path, f"{path}: cannot read: No such file or directory"


@pytest.mark.parametrize(
    "case", [_missing_fingerprint, _not_json, _array_element, _not_an_object, _bad_status, _unreadable]
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, case: Any) -> None:
    path, message = case(tmp_path)
    result = run(str(path), "--no-library")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr == f"error: {message}\n"


def test_bad_stdin_is_named(tmp_path: Path) -> None:
    result = run("-", "--no-library", stdin='\n\n{"version": "4"}\n')
    assert result.exit_code == 2
    assert result.stderr == "error: <stdin>:3: not an Alertmanager webhook body: groupKey: Field required\n"


def test_an_unreachable_prometheus_exits_2(tmp_path: Path, playbook_dir: Path) -> None:
    log = jsonl(tmp_path / "log.jsonl", body(alert("UnitDown", "a1", unit="nginx")))
    url = f"http://127.0.0.1:{free_port()}"
    result = run(str(log), "--playbooks", str(playbook_dir), "--no-library", "--prometheus", url)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: diagnose: Prometheus at {url} is not ready (/-/ready);"
        " pass --no-diagnose to count without it\n"
    )
    assert (
        run(str(log), "--playbooks", str(playbook_dir), "--prometheus", url, "--no-diagnose").exit_code == 0
    )


def test_diagnose_runs_at_each_episode_start(tmp_path: Path, playbook_dir: Path, config: Path) -> None:
    """Against a real Prometheus: a check that holds at the episode's start confirms it, one that
    does not rules it out, and an episode from before Prometheus had data stays unknown."""
    with MetricTarget() as target, prometheus_server(tmp_path / "prom", [target.address]) as url:
        target.set("cov_unit_down", 1, unit="nginx")
        target.set("cov_unit_down", 0, unit="redis")
        with PrometheusClient(url, timeout=5) as client:
            deadline = time.monotonic() + 30
            while sorted(client.query("cov_unit_down")) != [0.0, 1.0]:
                assert time.monotonic() < deadline, "Prometheus never scraped the target"
                time.sleep(0.1)
        now = datetime.now(UTC)
        log = jsonl(
            tmp_path / "log.jsonl",
            body(alert("UnitDown", "a1", now, unit="nginx")),
            body(alert("UnitDown", "a2", now, unit="redis")),
            body(alert("UnitDown", "a1", now - timedelta(hours=3), unit="nginx")),
            body(alert("DiskFull", "d1", now, instance="db-1")),  # suggest-only: not diagnosed
        )
        config.write_text(f"remediation:\n  prometheus_url: {url}\n")
        args = (str(log), "--playbooks", str(playbook_dir), "--no-library")
        data = coverage_json(*args)
        human = run(*args)
    assert data["diagnose"] == {
        "prometheus": url,
        "evaluated_at": "each episode's startsAt",
        "confirmed": 1,
        "ruled_out": 1,
        "unknown": 1,
        "no_checks": 0,
        "query_errors": 0,
        "first_error": None,
    }
    assert data["rows"][0]["diagnose"] == {"confirmed": 1, "ruled_out": 1, "unknown": 1, "no_checks": 0}
    lines = human.stdout.splitlines()
    assert lines[1].split() == [
        "alertname",
        "severity",
        "episodes",
        "fixable",
        "confirmed",
        "suggest-only",
        "unmatched",
    ]
    assert lines[2].split() == ["UnitDown", "warning", "3", "3", "1", "0", "0"]
    assert lines[-2] == (
        f"diagnose at each episode's start on {url}, fixable episodes: 1 confirmed, 1 ruled out,"
        " 1 unknown (no data at that time or the query failed), 0 without checks"
    )
    assert lines[-1] == "coverage: 4 episodes, 75.0% fixable (3), 25.0% suggest-only (1), 0.0% unmatched (0)"
