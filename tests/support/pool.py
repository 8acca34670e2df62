"""The pool-size scenario (`devstack.pool`) as the remediation end-to-end tests run it: a service
whose connection pool is too small (size 5 in its config repository), a Prometheus target that
reports it exhausted until the size it runs is 20, and the playbook that raises the size and
verifies against that target.

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
from devstack.pool import HEALTHY_SIZE
from devstack.pool import pool_playbook as playbook
from tests.support.forges.repos import ConfigRepo, make_config_repo
from tests.support.metric_target import MetricTarget


class PoolTarget(MetricTarget):
    """`demo_pool_exhausted{service}` is 1 while the pool size the service runs is below the healthy
    size (20, what the fix makes it), else 0; read from its repository on every scrape."""

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
                value = 1.0 if size() < HEALTHY_SIZE else 0.0
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


def pool_playbook(name: str, alertname: str, **options: Any) -> str:
    """The scenario's playbook (`devstack.pool.pool_playbook`, whose keywords `options` are) as
    YAML, verified against `demo_pool_exhausted`."""
    doc = playbook(
        name, alertname, verify_query='demo_pool_exhausted{service="{{ params.service }}"}', **options
    )
    return yaml.safe_dump(doc, sort_keys=False)
