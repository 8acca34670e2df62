"""The synthetic pool-exhaustion scenario the benchmarks, the chaos run and the end-to-end tests
share: a config repository in which every service's connection pool is too small
(`services/<service>/config.yaml`, size 5) and the playbook that raises it, tests it, pushes it
and verifies it. One builder here, below `bench` (which may not import the tests), so the three
run the same scenario rather than three copies of it drifting apart.

Local files and git only: nothing here talks to selfheal.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: A service's config file in the repository; the playbook edits `pool.size` in it.
CONFIG = "services/{service}/config.yaml"
#: The size the fix raises a pool of 5 to (scale 4): a service is healthy from this size up.
HEALTHY_SIZE = 20


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` (as a fixed author, so commits need no configured identity); its output,
    stripped. A failure raises `subprocess.CalledProcessError`."""
    out = subprocess.run(
        ["git", "-c", "user.name=dev", "-c", "user.email=dev@localhost", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.strip()


def seed_config_repo(
    root: Path, services: Iterable[str], *, size: int = 5, deploy_log: Path | None = None
) -> tuple[Path, Path]:
    """A bare remote (the GitOps target, `root/remote.git`) holding one config per service, and
    selfheal's clone of it (`root/work`); (remote, work). With `deploy_log`, every later push is a
    deploy: a post-receive hook appends one `old new ref` line per updated ref to it."""
    root.mkdir(parents=True, exist_ok=True)
    remote, seed, work = root / "remote.git", root / "seed", root / "work"
    git(root, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    git(root, "init", "--quiet", "--initial-branch=main", str(seed))
    for service in services:
        cfg = seed / CONFIG.format(service=service)
        cfg.parent.mkdir(parents=True)
        cfg.write_text(f"# pool settings\npool:\n  size: {size}\n  timeout: 30s\n")
    git(seed, "add", "-A")
    git(seed, "commit", "--quiet", "-m", "initial config")
    git(seed, "push", "--quiet", str(remote), "main:main")
    if deploy_log is not None:
        hook = remote / "hooks" / "post-receive"
        hook.write_text(f"#!/bin/sh\ncat >> '{deploy_log}'\n")
        hook.chmod(0o755)
    git(root, "clone", "--quiet", "--branch", "main", str(remote), str(work))
    return remote, work


def pool_playbook(
    name: str,
    alertname: str,
    *,
    verify_query: str,
    matchers: Sequence[str] = (),
    repo: str = "config",
    mode: str = "auto",
    max_runs: int = 10,
    require_firing: bool = True,
    scale: float = 4,
    test_argv: list[str] | None = None,
    deploy: list[Any] | None = None,
    hold_for: str = "2s",
    verify_timeout: str | None = "40s",
    diagnose: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The playbook raising `pool.size` by `scale` (up to 100) for the alert's `service`: a
    sandboxed test, then a push to main unless `deploy` says otherwise, then `verify_query < 1`
    held for `hold_for` (no verify when `verify_timeout` is None); auto, no human."""
    file = CONFIG.format(service="{{ params.service }}")
    doc: dict[str, Any] = {
        "apiVersion": "selfheal/v1",
        "kind": "Playbook",
        "name": name,
        "description": "Connection pool exhausted: raise the pool size",
        "category": "capacity",
        "match": {"alertname": alertname, "matchers": [*matchers, 'service=~".+"']},
        "target": "{{ params.service }}",
        "repo": repo,
        "params": {"service": {"from": "label", "key": "service", "pattern": "^[a-z0-9-]{1,63}$"}},
        "policy": {
            "mode": mode,
            "max_runs": max_runs,
            "window": "1h",
            "cooldown": "0s",
            "require_firing": require_firing,
        },
        "fix": [
            {
                "git_edit": {
                    "file": file,
                    "key": "pool.size",
                    "scale": scale,
                    "max_value": 100,
                }
            }
        ],
        "test": [
            {
                "command": {
                    "argv": test_argv
                    or ["grep", "-q", "size:", CONFIG.replace("{service}", "{{ params.service }}")],
                    "timeout": "60s",
                }
            }
        ],
        "deploy": deploy or [{"git_push": {"branch": "main"}}],
        "rollback": "auto",
    }
    if verify_timeout is not None:
        doc["verify"] = {
            "query": verify_query,
            "condition": "< 1",
            "hold_for": hold_for,
            "timeout": verify_timeout,
        }
    if diagnose:
        doc["diagnose"] = diagnose
    return doc
