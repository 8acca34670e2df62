"""The `pull_request` and `gitops_sync` steps in playbooks: the issue's exact form lints and plans
(through the CLI, as an operator runs it), the rules that keep a merge-approval safe, and rendered
names that must stay names whatever a label carried."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from models.incident import WebhookAlert
from models.plan import GitopsSyncAction, PullRequestAction
from playbooks.loader import lint_paths, load_playbooks
from selfheal.playbooks_cli import playbooks_app

FORM = """\
apiVersion: selfheal/v1
kind: Playbook
name: pool-raise-reviewed
description: Raise the pool through a reviewed pull request
match:
  alertname: PoolExhausted
target: "{{ params.service }}"
repo: config
params:
  service: {from: label, key: service, pattern: '^.+$'}
policy: {mode: auto}
fix:
  - git_edit: {file: "services/{{ params.service }}/config.yaml", key: pool.size, scale: 2, max_value: 100}
deploy:
  - pull_request: {repo: config, merge: human}
  - gitops_sync: {argocd: {app: "{{ params.service }}"}}
"""
DEPLOY = FORM[FORM.index("deploy:") :]


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def alert(service: str = "cart") -> WebhookAlert:
    return WebhookAlert.model_validate(
        {
            "status": "firing",
            "labels": {"alertname": "PoolExhausted", "service": service},
            "annotations": {},
            "startsAt": "2026-01-05T10:00:00Z",
            "fingerprint": "abc123",
        }
    )


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for key in list(os.environ):
        if key.startswith("SELFHEAL_"):
            monkeypatch.delenv(key)
    path = tmp_path / "selfheal.yaml"
    path.write_text("remediation:\n  repos:\n    config: {path: /srv/config}\n")
    monkeypatch.setenv("SELFHEAL_CONFIG", str(path))
    yield path


def test_the_issue_form_lints_and_plans_through_the_cli(tmp_path: Path, config: Path) -> None:
    directory = tmp_path / "playbooks"
    write(directory, FORM)
    runner = CliRunner()
    lint = runner.invoke(playbooks_app, ["lint", str(directory), "--no-library"])
    assert lint.exit_code == 0 and lint.stdout == "1 playbooks OK\n", lint.output
    hook = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "selfheal",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [alert().model_dump(mode="json")],
    }
    (tmp_path / "alert.json").write_text(json.dumps(hook))
    plan = runner.invoke(
        playbooks_app, ["plan", str(tmp_path / "alert.json"), "--dir", str(directory), "--no-library"]
    )
    assert plan.exit_code == 0, plan.output
    assert "open a pull request of the fix into the base branch of config" in plan.stdout
    assert "wait up to 1d for a person to merge it" in plan.stdout
    assert (
        "sync Argo CD application cart and wait up to 10m until it runs the fix and is healthy" in plan.stdout
    )


def test_rendered_actions(tmp_path: Path) -> None:
    pbs = load_playbooks([write(tmp_path, FORM)], include_library=False)
    plan = pbs.match_first([alert("checkout")], incident_id="i").plan  # type: ignore[union-attr]
    pr, sync = (s.action for s in plan.deploy)
    assert pr == PullRequestAction(repo="config", merge="human", labels=["selfheal"], timeout_seconds=86400)
    assert isinstance(sync, GitopsSyncAction) and sync.argocd is not None and sync.argocd.app == "checkout"
    assert plan.uses_gitops() and not plan.merge_approves()


def test_a_label_cannot_turn_the_app_into_another_path(tmp_path: Path) -> None:
    """The param pattern is loose on purpose: the rendered app name is checked on its own."""
    pbs = load_playbooks([write(tmp_path, FORM)], include_library=False)
    found = pbs.match_first([alert("../../settings")], incident_id="i")
    assert found is not None and found.plan is None
    assert any("is not a valid Argo CD application name" in r for r in found.reasons), found.reasons


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        (
            "  - pull_request: {repo: other}\n",
            "pull_request.repo: 'other' is not the playbook's repo 'config'",
        ),
        ("  - pull_request: {repo: config, merge: sometimes}\n", "merge"),
        (
            "  - pull_request: {repo: config}\n  - pull_request: {repo: config}\n",
            "at most one pull_request step",
        ),
        ("  - pull_request: {repo: config}\n  - git_push: {branch: main}\n", "use one of them"),
        (
            "  - gitops_sync: {argocd: {app: a}, flux: {namespace: f, name: n}}\n",
            "exactly one of argocd or flux",
        ),
        ("  - gitops_sync: {}\n", "exactly one of argocd or flux"),
        ("  - gitops_sync: {flux: {kind: GitRepository, namespace: f, name: n}}\n", "kind"),
        ("  - gitops_sync: {flux: {namespace: Not_Valid, name: n}}\n", "not a valid DNS-1123 label"),
        ("  - pull_request: {repo: config, labels: ['bad\\nlabel']}\n", "is not a label"),
        ("  - pull_request: {repo: config, merge: auto, merge_approves: true}\n", "only with merge: human"),
        ("  - pull_request: {repo: config, merge_approves: true}\n", "only for policy.mode: approve"),
    ],
)
def test_bad_deploy_steps_are_lint_errors(tmp_path: Path, deploy: str, message: str) -> None:
    errors = lint_paths([write(tmp_path, FORM.replace(DEPLOY, "deploy:\n" + deploy))])
    assert any(message in e for e in errors), errors


def test_merge_approves_only_where_nothing_changes_before_the_merge(tmp_path: Path) -> None:
    approve = FORM.replace("policy: {mode: auto}", "policy: {mode: approve}").replace(
        "merge: human}", "merge: human, merge_approves: true}"
    )
    assert lint_paths([write(tmp_path / "ok", approve)]) == []
    plan = (
        load_playbooks([tmp_path / "ok"], include_library=False).match_first([alert()], incident_id="i").plan
    )  # type: ignore[union-attr]
    assert plan.merge_approves()
    with_command = approve.replace("fix:\n", "fix:\n  - command: {argv: [touch, x]}\n")
    errors = lint_paths([write(tmp_path / "cmd", with_command)])
    assert any("fix steps must be git_revert or git_edit only" in e for e in errors), errors
    later = approve.replace("deploy:\n", "deploy:\n  - http: {url: 'https://hooks.example/x'}\n")
    errors = lint_paths([write(tmp_path / "later", later)])
    assert any("must be the first deploy step" in e for e in errors), errors


def test_pull_request_is_not_a_rollback_step_but_gitops_sync_is(tmp_path: Path) -> None:
    pr_rollback = FORM + "rollback:\n  - pull_request: {repo: config}\n"
    errors = lint_paths([write(tmp_path / "a", pr_rollback)])
    assert any("`pull_request` is not allowed in rollback steps" in e for e in errors), errors
    sync_rollback = FORM + "rollback:\n  - gitops_sync: {flux: {namespace: flux-system, name: apps}}\n"
    assert lint_paths([write(tmp_path / "b", sync_rollback)]) == []


def test_gitops_steps_need_the_repo(tmp_path: Path) -> None:
    no_repo = FORM.replace("repo: config\nparams", "params").replace(
        "fix:\n  - git_edit", 'fix:\n  - command: {argv: ["true"]}\n  # - git_edit'
    )
    errors = lint_paths([write(tmp_path, no_repo)])
    assert any(
        "repo: required because the playbook has git steps (gitops_sync, pull_request)" in e for e in errors
    ), errors


def test_a_literal_flux_namespace_outside_kube_namespaces_is_a_lint_error(tmp_path: Path) -> None:
    flux = FORM.replace(
        '{argocd: {app: "{{ params.service }}"}}', "{flux: {namespace: flux-system, name: apps}}"
    )
    path = write(tmp_path, flux)
    assert lint_paths([path], kube_namespaces=["flux-system"]) == []
    errors = lint_paths([path], kube_namespaces=["shop"])
    assert any("namespace 'flux-system' is not in kube.namespaces (allowed: shop)" in e for e in errors), (
        errors
    )
