"""The shipped playbook library: every playbook lints clean, and its sample alert selects it alone."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.incident import AlertmanagerWebhook
from models.plan import CommandAction, GitPushAction
from playbooks.loader import LIBRARY_DIR, lint_paths, load_file, load_playbooks
from playbooks.matcher import PlaybookSet
from selfheal.playbooks_cli import playbooks_app

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted(LIBRARY_DIR.glob("*.yaml"))
SETTINGS = {"public_url": "https://selfheal.example"}
WEBHOOK_KEYS = {
    "receiver",
    "status",
    "alerts",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "version",
    "groupKey",
    "truncatedAlerts",
}
ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}


def test_library_covers_the_known_patterns() -> None:
    names = {p.stem for p in FILES}
    assert len(names) >= 8
    assert {p.stem for p in (LIBRARY_DIR / "samples").glob("*.json")} == names
    kinds = set()
    for path in FILES:
        playbook, errors = load_file(path)
        assert playbook is not None, errors
        kinds |= {step.kind for step in playbook.spec.steps()}
    assert kinds == {"git_revert", "git_edit", "command", "http", "git_push"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_playbook_lints_clean_and_its_sample_selects_it(path: Path) -> None:
    assert lint_paths([path]) == []
    playbook, _ = load_file(path)
    assert playbook is not None and playbook.name == path.stem

    raw = json.loads((LIBRARY_DIR / "samples" / f"{path.stem}.json").read_text())
    assert set(raw) == WEBHOOK_KEYS and raw["version"] == "4"
    assert all(set(a) == ALERT_KEYS for a in raw["alerts"])
    webhook = AlertmanagerWebhook.model_validate(raw)

    library = load_playbooks([], include_library=True)
    for alert in webhook.alerts:
        result = library.match(alert, incident_id="inc-42", settings_ctx=SETTINGS)
        assert result.playbook == playbook.name, result.reasons
        assert not [r for r in result.reasons if "also matches" in r or "ties" in r]
        plan = result.plan
        assert plan is not None
        assert plan.incident_id == "inc-42" and plan.alert_fingerprint == alert.fingerprint
        assert plan.playbook_digest == hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        assert plan.alert_starts_at == alert.startsAt
        assert plan.fix and plan.verify is not None and plan.rollback == "auto"
        assert plan.params == result.params and all(plan.params.values())
        assert all(isinstance(s.action, CommandAction) and s.action.sandbox for s in plan.test)
        if plan.repo:  # GitOps playbooks ship the fix by pushing it
            assert any(isinstance(s.action, GitPushAction) for s in plan.deploy)
        # Only this playbook matches the sample: each other one alone does not apply.
        for other in library.playbooks:
            if other.name != playbook.name:
                assert PlaybookSet([other]).match(alert).playbook is None


def test_library_has_no_ties_or_duplicates() -> None:
    assert lint_paths([LIBRARY_DIR]) == []


def test_cli_lint_library() -> None:
    result = CliRunner().invoke(playbooks_app, ["lint", str(LIBRARY_DIR)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"{len(FILES)} playbooks OK"


def test_selfheal_playbooks_lint_subprocess() -> None:
    """The real entry point; needs `app.add_typer(playbooks_app, name="playbooks")` in selfheal.cli."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SELFHEAL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "selfheal", "playbooks", "lint", "playbooks/library"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stdout.strip() == f"{len(FILES)} playbooks OK"
