"""The pool-size scenario the remediation end-to-end tests share: a service whose connection pool
is too small (size 5 in its config repository), a Prometheus target that reports it exhausted
until the size it runs is 20, and the playbook that raises the size and verifies against it.

Each test makes its own case (unique service and alert names, its own repository and playbooks);
one Prometheus with one `PoolTarget` serves a whole test module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from demo.observability import prometheus_server
from tests.support.forges.repos import ConfigRepo, make_config_repo
from tests.support.metric_target import MetricTarget


class PoolTarget(MetricTarget):
    """`demo_pool_exhausted{service}` is 1 while the pool size the service runs is below 20, else 0;
    read from its repository on every scrape."""

    def __init__(self) -> None:
        super().__init__()
        self._sizes: dict[str, Callable[[], int]] = {}

    def watch(self, repo: ConfigRepo, revision: Callable[[], str] | None = None) -> None:
        """The service runs `revision` of its repository: by default main (a push deploys), else
        what a GitOps controller synced."""
        self._sizes[repo.service] = lambda: repo.pool_size(revision() if revision is not None else "main")

    def render(self) -> str:
        for service, size in list(self._sizes.items()):
            try:
                value = 1.0 if size() < 20 else 0.0
            except Exception:  # a revision not there yet: the series keeps its last value
                continue
            self.set("demo_pool_exhausted", value, service=service)
        return super().render()


@contextmanager
def pool_prometheus(data_dir: Path) -> Iterator[tuple[str, PoolTarget]]:
    """A real Prometheus scraping a `PoolTarget`: its URL and the target."""
    with PoolTarget() as target, prometheus_server(data_dir, [target.url]) as url:
        yield url, target


@dataclass
class PoolCase:
    service: str
    alertname: str
    repo: ConfigRepo
    playbooks: Path

    def remediation(self, prometheus_url: str) -> dict[str, Any]:
        """The `remediation:` settings that run this case's playbooks on its repository."""
        return {
            "include_library": False,
            "playbook_dirs": [str(self.playbooks)],
            "repos": {"config": {"path": str(self.repo.work)}},
            "prometheus_url": prometheus_url,
            "verify_poll_seconds": 0.5,
        }


def pool_case(
    root: Path, target: PoolTarget, playbooks: dict[str, str], *, revision: Callable[[], str] | None = None
) -> PoolCase:
    """A fresh service under `root`: its repository (every push to main logged as a deploy), watched
    by `target` at `revision` (main by default), and `playbooks` by file name with `ALERTNAME`
    replaced by the case's alert name."""
    service = "svc-" + uuid.uuid4().hex[:8]
    alertname = "PoolExhausted" + uuid.uuid4().hex[:6]
    repo = make_config_repo(root / service, service, deploy_log=True)
    target.watch(repo, revision)
    folder = repo.root / "playbooks"
    folder.mkdir()
    for name, text in playbooks.items():
        (folder / f"{name}.yaml").write_text(text.replace("ALERTNAME", alertname))
    return PoolCase(service, alertname, repo, folder)


def pool_playbook(
    name: str,
    alertname: str,
    *,
    deploy: list[Any] | None = None,
    scale: float = 4,
    mode: str = "auto",
    max_runs: int = 10,
    require_firing: bool = True,
    test_argv: list[str] | None = None,
    verify_timeout: str | None = "40s",
    diagnose: list[dict[str, str]] | None = None,
) -> str:
    """The playbook raising `pool.size` by `scale` (up to 100), deployed by a push to main unless
    `deploy` says otherwise, verified against `demo_pool_exhausted` unless `verify_timeout` is None."""
    doc: dict[str, Any] = {
        "apiVersion": "selfheal/v1",
        "kind": "Playbook",
        "name": name,
        "description": "Connection pool exhausted: raise the pool size",
        "category": "capacity",
        "match": {"alertname": alertname, "matchers": ['service=~".+"']},
        "target": "{{ params.service }}",
        "repo": "config",
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
                    "file": "services/{{ params.service }}/config.yaml",
                    "key": "pool.size",
                    "scale": scale,
                    "max_value": 100,
                }
            }
        ],
        "test": [
            {
                "command": {
                    "argv": test_argv or ["grep", "-q", "size:", "services/{{ params.service }}/config.yaml"],
                    "timeout": "60s",
                }
            }
        ],
        "deploy": deploy or [{"git_push": {"branch": "main"}}],
        "rollback": "auto",
    }
    if verify_timeout is not None:
        doc["verify"] = {
            "query": 'demo_pool_exhausted{service="{{ params.service }}"}',
            "condition": "< 1",
            "hold_for": "2s",
            "timeout": verify_timeout,
        }
    if diagnose:
        doc["diagnose"] = diagnose
    return yaml.safe_dump(doc, sort_keys=False)
