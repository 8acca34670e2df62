"""`selfheal playbooks lint|match|plan`: output shapes, exit codes, and one line per bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from models.incident import AlertmanagerWebhook
from playbooks.loader import LIBRARY_DIR, load_playbooks
from selfheal.playbooks_cli import playbooks_app
from tests.support.library import needs_full_library

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = LIBRARY_DIR / "samples"
SAMPLE_FILES = sorted(SAMPLES.glob("*.json"))


@pytest.fixture(autouse=True)
def config(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A settings file configuring the repos the library names (as the worker would have)."""
    for key in list(os.environ):
        if key.startswith("SELFHEAL_"):
            monkeypatch.delenv(key)
    path = tmp_path_factory.mktemp("config") / "selfheal.yaml"
    path.write_text(
        "remediation:\n  repos:\n    config: {path: /srv/config}\n    gitops: {path: /srv/gitops}\n"
    )
    monkeypatch.setenv("SELFHEAL_CONFIG", str(path))
    yield path


def run(*args: str) -> Result:
    return CliRunner().invoke(playbooks_app, list(args))


@needs_full_library
def test_lint_default_is_the_library() -> None:
    result = run("lint")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{len(list(LIBRARY_DIR.glob('*.yaml')))} playbooks OK\n"
    assert run("lint", "--no-library").stdout == "0 playbooks OK\n"


def test_lint_reports_each_problem_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: selfheal/v1\nkind: Playbook\nname: x\nfoo: 1\n")
    result = run("lint", str(tmp_path))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert f"{tmp_path / 'bad.yaml'}:4: foo: unknown key" in lines
    assert (
        f"{tmp_path / 'bad.yaml'}:3: name: String should match pattern '^[a-z0-9][a-z0-9-]{{1,62}}$'" in lines
    )
    assert all(line.startswith(f"{tmp_path / 'bad.yaml'}:") for line in lines)


@needs_full_library
def test_repos_come_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SELFHEAL_CONFIG")
    result = run("match", str(SAMPLES / "hpa-raise-max-replicas.json"), "--json")
    assert json.loads(result.stdout)["alerts"][0]["reasons"] == [
        "hpa-raise-max-replicas: not loaded: repo 'gitops' is not configured (remediation.repos: none)"
    ]
    assert run("lint").exit_code == 0  # without configured repos, lint does not check repo names
    (tmp_path / "etc").mkdir()
    monkeypatch.setenv("SELFHEAL_CONFIG", str(write_config(tmp_path / "etc", "config")))
    mine = (LIBRARY_DIR / "hpa-raise-max-replicas.yaml").read_text().replace("hpa-raise", "my-hpa-raise")
    (tmp_path / "mine.yaml").write_text(mine)
    line = mine.splitlines().index("repo: gitops") + 1
    result = run("lint", str(tmp_path / "mine.yaml"))
    assert result.exit_code == 1
    assert result.stdout == (
        f"{tmp_path / 'mine.yaml'}:{line}: repo: 'gitops' is not configured (remediation.repos: config)\n"
    )
    result = run("match", str(SAMPLES / "hpa-raise-max-replicas.json"), "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"{tmp_path / 'mine.yaml'}:{line}: repo: 'gitops' is not configured (remediation.repos: config)\n"
    )


def write_config(directory: Path, *repos: str) -> Path:
    path = directory / "selfheal.yaml"
    entries = "".join(f"    {r}: {{path: /srv/{r}}}\n" for r in repos)
    path.write_text(f"remediation:\n  repos:\n{entries}")
    return path


def test_bad_settings_exit_2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("remediation: {bogus: 1}\n")
    monkeypatch.setenv("SELFHEAL_CONFIG", str(tmp_path / "bad.yaml"))
    result = run("match", str(SAMPLES / "cert-renew.json"))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: config ") and "remediation.bogus" in result.stderr


@needs_full_library
def test_match_json_shape() -> None:
    result = run("match", str(SAMPLES / "revert-bad-config-deploy.json"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "alerts": [
            {
                "fingerprint": "3b6f0e5a9c2d4e71",
                "playbook": "revert-bad-config-deploy",
                "mode": "auto",
                "params": {"service": "checkout", "window": "90m"},
                "deferred": [],
                "alternatives": [],
                "reasons": [],
            }
        ]
    }


@needs_full_library
def test_match_json_when_nothing_applies(tmp_path: Path) -> None:
    body = json.loads((SAMPLES / "quota-raise-memory.json").read_text())
    body["alerts"][0]["labels"]["resource"] = "pods"
    body["alerts"].append({**body["alerts"][0], "fingerprint": "ffff0000ffff0000"})
    body["alerts"][1]["labels"] = {
        **body["alerts"][0]["labels"],
        "resource": "limits.memory",
        "namespace": "x; id",
    }
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(body))
    alerts = json.loads(run("match", str(path), "--json").stdout)["alerts"]
    assert [a["playbook"] for a in alerts] == [None, None]
    assert alerts[0]["reasons"] == [
        'quota-raise-memory: matcher resource=~"requests[.]memory|limits[.]memory" does not match'
        " (resource='pods')"
    ]
    assert alerts[1]["mode"] is None and alerts[1]["params"] == {}
    assert alerts[1]["reasons"] == [
        "quota-raise-memory: param namespace: value 'x; id' does not match"
        " ^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
    ]


@needs_full_library
def test_match_human_output() -> None:
    result = run("match", str(SAMPLES / "node-systemd-unit-restart.json"))
    assert result.exit_code == 0
    assert result.stdout == (
        "c58d2e7f0a4b1936 NodeSystemdServiceFailed: node-systemd-unit-restart (mode approve)"
        " node=ip-10-0-3-22.eu-west-1.compute.internal unit=fluent-bit.service\n"
    )


@needs_full_library
@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda p: p.stem)
def test_plan_lists_every_step(sample: Path) -> None:
    result = run("plan", str(sample))
    assert result.exit_code == 0, result.output
    webhook = AlertmanagerWebhook.model_validate_json(sample.read_text())
    library = load_playbooks([])
    match = library.match(webhook.alerts[0], settings_ctx={"public_url": ""})
    plan = match.plan
    if plan is None and match.deferred:  # `from: query` params: previewed with `<name>` in their place
        assert match.playbook is not None
        assert "resolved at run time from Prometheus: " + ", ".join(match.deferred) in result.stdout
        plan = library.preview(match.candidates()[0], webhook.alerts[0], settings_ctx={"public_url": ""})
        if plan is None:  # the placeholder cannot stand in a path or name: no steps shown yet
            assert "its steps render once those params are resolved" in result.stdout
            return
    assert plan is not None
    out = result.stdout
    assert f"playbook {plan.playbook} (digest {plan.playbook_digest})" in out
    rollback = [] if isinstance(plan.rollback, str) else plan.rollback
    for step in [*plan.fix, *plan.test, *plan.deploy, *rollback]:
        assert f"[{step.index}] {step.description}\n" in out
        assert json.dumps(step.action.model_dump(mode="json"), ensure_ascii=False) in out
    for check in plan.diagnose:
        assert f"{check.query} {check.condition}" in out
    assert plan.verify is not None and plan.verify.query in out
    assert "  fix:\n" in out and "  test:" in out and "  deploy:" in out and "  rollback: auto" in out


@needs_full_library
def test_plan_json_and_exit_1_when_nothing_applies(tmp_path: Path) -> None:
    result = run("plan", str(SAMPLES / "cert-renew.json"), "--json")
    data = json.loads(result.stdout)
    assert data["alerts"][0]["plan"]["fix"][0]["action"]["kind"] == "http"
    result = run("plan", str(SAMPLES / "cert-renew.json"), "--no-library")
    assert result.exit_code == 1
    assert result.stdout == (
        "alert 7e3a5b1c9d2f8064 (CertManagerCertExpirySoon): no playbook applies\n"
        "  - no playbook handles alertname 'CertManagerCertExpirySoon'\n"
    )


@needs_full_library
def test_extra_dirs(tmp_path: Path) -> None:
    text = (LIBRARY_DIR / "cert-renew.yaml").read_text().replace("name: cert-renew", "name: my-cert-renew")
    (tmp_path / "mine.yaml").write_text(text)
    result = run("match", str(SAMPLES / "cert-renew.json"), "--no-library", "--dir", str(tmp_path))
    assert result.stdout.startswith("7e3a5b1c9d2f8064 CertManagerCertExpirySoon: my-cert-renew (mode auto)")
    # With the library too, the copy duplicates nothing by name but ties with the original.
    assert run("lint", "--dir", str(tmp_path)).exit_code == 1
    result = run("match", str(SAMPLES / "cert-renew.json"), "--dir", str(tmp_path), "--json")
    reasons = json.loads(result.stdout)["alerts"][0]["reasons"]
    assert reasons[0].startswith("cert-renew: ties with my-cert-renew")


@needs_full_library
def test_invalid_playbooks_stop_match_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: selfheal/v1\n")
    result = run("match", str(SAMPLES / "cert-renew.json"), "--dir", str(tmp_path))
    assert result.exit_code == 2
    assert f"{tmp_path / 'bad.yaml'}:1: kind: required" in result.stderr.splitlines()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read: No such file or directory"),
        ("{not json", ":1:2: invalid JSON: Expecting property name enclosed in double quotes"),
        ('{"version": "4"}', "not an Alertmanager webhook: groupKey: Field required"),
        ("[]", "not an Alertmanager webhook: (root): Input should be a valid dictionary"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
)
@pytest.mark.parametrize("command", ["match", "plan"])
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, command: str, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "alert.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    result = run(command, str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {path}")
    assert message in result.stderr


@needs_full_library
def test_selfheal_playbooks_match_subprocess() -> None:
    """The real entry point; needs `app.add_typer(playbooks_app, name="playbooks")` in selfheal.cli."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "selfheal", "playbooks", "match", str(SAMPLES / "cert-renew.json"), "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["alerts"][0]["playbook"] == "cert-renew"
    proc = subprocess.run(
        [sys.executable, "-m", "selfheal", "playbooks", "plan", "missing.json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == "error: missing.json: cannot read: No such file or directory\n"
