"""The pool scenario the benchmarks, the chaos run and the e2e tests share: its repository and
its playbook, as git and the playbook loader see them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from devstack.pool import CONFIG, pool_playbook, seed_config_repo
from playbooks.loader import load_file


def git(cwd: Path, *args: str) -> str:
    argv = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args]
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True).stdout


def test_seeded_repository_holds_each_service_and_logs_later_pushes(tmp_path: Path) -> None:
    log = tmp_path / "deploys.log"
    remote, work = seed_config_repo(tmp_path / "repo", ["cart", "pay"], size=7, deploy_log=log)
    for service in ("cart", "pay"):
        text = git(remote, "show", f"main:{CONFIG.format(service=service)}")
        assert yaml.safe_load(text)["pool"] == {"size": 7, "timeout": "30s"}
    assert not log.exists()  # the seed is not a deploy
    (work / "NOTES.md").write_text("x\n")
    git(work, "add", "NOTES.md")
    git(work, "commit", "-qm", "notes")
    git(work, "push", "-q", "origin", "main")
    old, new, ref = log.read_text().split()
    assert ref == "refs/heads/main" and new == git(remote, "rev-parse", "main").strip() and old != new


def test_playbook_loads_with_its_options(tmp_path: Path) -> None:
    doc = pool_playbook(
        "pool-raise-1",
        "PoolExhausted",
        verify_query="vector(0)",
        matchers=['shard="1"'],
        repo="config-1",
        max_runs=100,
        hold_for="1s",
        deploy=[{"pull_request": {"repo": "config-1", "merge": "human"}}],
    )
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    playbook, errors = load_file(path)
    assert errors == [] and playbook is not None
    spec = playbook.spec
    assert spec.repo == "config-1" and spec.policy.max_runs == 100
    assert spec.verify is not None and spec.verify.query == "vector(0)"
    assert doc["match"]["matchers"] == ['shard="1"', 'service=~".+"']
    assert "verify" not in pool_playbook("p", "A", verify_query="q", verify_timeout=None)
