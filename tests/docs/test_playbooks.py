"""docs/playbooks.md stays true: its example playbooks lint clean and it covers the library and CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from playbooks.loader import LIBRARY_DIR, lint_paths
from selfheal.playbooks_cli import playbooks_app

DOC = Path(__file__).resolve().parents[2] / "docs" / "playbooks.md"
TEXT = DOC.read_text(encoding="utf-8")
EXAMPLES = [b for b in re.findall(r"```yaml\n(.*?)```", TEXT, flags=re.S) if "kind: Playbook\nname:" in b]


def test_one_worked_example_per_action_kind() -> None:
    assert len(EXAMPLES) >= 5
    for kind in ("git_revert", "git_edit", "command", "http", "git_push"):
        assert f"### {kind}:" in TEXT
        assert any(f"{kind}:" in example for example in EXAMPLES), kind


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.split("\nname: ", 1)[1].split("\n", 1)[0])
def test_example_lints_clean(tmp_path: Path, example: str) -> None:
    path = tmp_path / "example.yaml"
    path.write_text(example, encoding="utf-8")
    assert lint_paths([path]) == []


def test_documents_every_library_playbook_and_command() -> None:
    for path in LIBRARY_DIR.glob("*.yaml"):
        assert f"`{path.stem}`" in TEXT, path.stem
    for command in playbooks_app.registered_commands:
        assert f"selfheal playbooks {command.name}" in TEXT


def test_the_services_defaults_example_loads() -> None:
    """The `remediation.services` example is valid settings, checked as the worker loads them."""
    import yaml

    from selfheal.settings import load_settings

    block = TEXT.split("### Per-service defaults", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    settings = load_settings(None, env="dev", remediation=yaml.safe_load(block)["remediation"])
    shop = settings.remediation.services["shop"]
    assert shop.repo == "config" and shop.verify.query is None and shop.verify.hold_for == 60
