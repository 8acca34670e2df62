"""docs/gitops.md stays true: its playbook lints, its settings load, and the plan lines it shows
are what `plan` prints for it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from models.incident import WebhookAlert
from playbooks.loader import lint_paths, load_playbooks
from playbooks.render import describe
from selfheal.settings import load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "gitops.md"
TEXT = DOC.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```yaml\n(.*?)```", TEXT, flags=re.S)
PLAYBOOK = next(b for b in BLOCKS if "kind: Playbook\nname:" in b)


def test_worked_example_lints_and_plans_as_shown(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(PLAYBOOK, encoding="utf-8")
    assert lint_paths([path]) == []
    alert = WebhookAlert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "PoolExhausted", "service": "cart"},
            "annotations": {},
            "startsAt": "2026-01-05T10:00:00Z",
            "fingerprint": "abc",
        }
    )
    plan = load_playbooks([path], include_library=False).match_first([alert], incident_id="i").plan
    assert plan is not None
    for step in plan.deploy:
        assert f"deploy {step.index + 1}: {describe(step.action)}" in TEXT


def test_settings_example_loads(tmp_path: Path) -> None:
    settings_block = next(b for b in BLOCKS if b.startswith("remediation:"))
    path = tmp_path / "selfheal.yaml"
    path.write_text(settings_block, encoding="utf-8")
    settings = load_settings(path)
    assert settings.gitops.forges["config"].kind == "github" and settings.gitops.argocd is not None
    role = [d for d in yaml.safe_load_all(next(b for b in BLOCKS if "kind: Role" in b))]
    assert {r["kind"] for r in role} == {"Role", "RoleBinding"}
