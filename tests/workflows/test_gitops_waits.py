"""The GitOps waits against time: a pull request nobody merges for its whole `timeout`, and an
Argo CD application that never finishes syncing. The time-skipping test server makes hours pass
in a moment; the forge and Argo CD are the test servers, the repository a real bare remote.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from connectors.local_tracker import LocalTracker
from models.incident import IncidentView, Stage
from models.incident_state import IncidentPolicySnapshot
from selfheal.settings import load_settings
from selfheal.worker import build_worker
from tests.support.forges import ArgoCdFake, ConfigRepo, GithubFake, make_config_repo
from tests.support.forges.repos import CONFIG, git
from tests.support.incidents import kinds, start_incident, view_when
from tests.support.payloads import simple, unique_group
from tests.support.services import skip_time
from workflows import gitops_rules
from workflows.incident import IncidentWorkflow

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def fakes() -> Iterator[tuple[GithubFake, ArgoCdFake]]:
    with GithubFake() as github, ArgoCdFake() as argo:
        github.add_token("bot", "selfheal-bot")
        argo.add_token("argo")
        yield github, argo


def playbook(alertname: str, deploy: list[Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "selfheal/v1",
            "kind": "Playbook",
            "name": "pool-raise-reviewed",
            "description": "Raise the pool through review",
            "match": {"alertname": alertname},
            "target": "{{ params.service }}",
            "repo": "config",
            "params": {"service": {"from": "label", "key": "service", "pattern": "^[a-z0-9-]{1,63}$"}},
            "policy": {"mode": "auto", "cooldown": "0s", "require_firing": False},
            "fix": [
                {
                    "git_edit": {
                        "file": "services/{{ params.service }}/config.yaml",
                        "key": "pool.size",
                        "value": 50,
                    }
                }
            ],
            "deploy": deploy,
        }
    )


async def start(
    env: WorkflowEnvironment,
    tmp_path: Path,
    fakes: tuple[GithubFake, ArgoCdFake],
    deploy: list[Any],
    policy: IncidentPolicySnapshot | None = None,
) -> tuple[ConfigRepo, WorkflowHandle[Any, Any], Any]:
    repo, settings, alertname, worker = await deployment(env, tmp_path, fakes, deploy)
    handle = await start_incident(
        env.client,
        settings.temporal.task_queue,
        simple(group=unique_group(), alertname=alertname, service=repo.service),
        policy,
        "gitops",
    )
    return repo, handle, worker


async def deployment(
    env: WorkflowEnvironment, tmp_path: Path, fakes: tuple[GithubFake, ArgoCdFake], deploy: list[Any]
) -> tuple[ConfigRepo, Any, str, Any]:
    """A config repo on the forge, a playbook deploying through `deploy`, and a running worker."""
    github, argo = fakes
    service = "svc-" + uuid.uuid4().hex[:8]
    alertname = "Pool" + uuid.uuid4().hex[:6]
    repo = make_config_repo(tmp_path / "repo", service)
    github.add_repo("acme/config", repo.remote)
    argo.add_app(service, repo.remote)
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "p.yaml").write_text(playbook(alertname, deploy))
    settings = load_settings(
        None,
        env="dev",
        data_dir=str(tmp_path / "data"),
        temporal={"task_queue": uuid.uuid4().hex},
        remediation={
            "include_library": False,
            "playbook_dirs": [str(tmp_path / "playbooks")],
            "repos": {"config": {"path": str(repo.work)}},
        },
        gitops={
            "forges": {
                "config": {"kind": "github", "url": github.url, "project": "acme/config", "token": "bot"}
            },
            "argocd": {"url": argo.url, "token": "argo"},
        },
    )
    worker = build_worker(env.client, settings, LocalTracker(settings.local_db_path))
    await worker.__aenter__()
    return repo, settings, alertname, worker


async def skip_until(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], pred: Any, step: float = 30, limit: int = 200
) -> IncidentView:
    """Let `step` seconds of workflow time pass at a time until `pred(view)` holds."""
    for _ in range(limit):
        view: IncidentView = await handle.query(IncidentWorkflow.view)
        if pred(view):
            return view
        await skip_time(env, step)
    raise AssertionError([(e.kind, e.message) for e in view.timeline])


async def test_a_pull_request_nobody_merges_is_closed_and_escalated(
    time_env: WorkflowEnvironment, tmp_path: Path, fakes: tuple[GithubFake, ArgoCdFake]
) -> None:
    deploy = [{"pull_request": {"repo": "config", "timeout": "3h"}}]
    repo, handle, worker = await start(time_env, tmp_path, fakes, deploy)
    try:
        await view_when(handle, lambda v: "pull_request" in kinds(v))
        await skip_time(time_env, 3 * 3600 + 600)  # three hours of nobody merging, in a moment
        view = await view_when(handle, lambda v: v.stage == Stage.AWAITING_DECISION)
    finally:
        await worker.__aexit__(None, None, None)  # `time_env` ends the incident it left waiting
    (summary,) = view.remediations
    assert summary.outcome == "failed"
    assert "was not merged within 3h (still open, auto-merge off); selfheal closed it" in summary.reason
    assert "nothing was deployed" in summary.reason
    pull = fakes[0].repos["acme/config"].pulls[1]
    assert pull.state == "closed" and not pull.merged and pull.closed_by == "selfheal-bot"
    assert [c["body"].split(":")[0] for c in pull.comments] == [
        "selfheal waited 3h for this to be merged and is closing it"
    ]
    # The wait looked at the forge every 5 minutes, not once per second, and no more than that.
    polls = fakes[0].requests.count(("GET", "/api/v3/repos/acme/config/pulls/1"))
    assert 30 <= polls <= 200, polls
    assert repo.pool_size() == 5


async def test_a_sync_that_never_completes_fails_with_what_was_seen_and_rollback_is_honest(
    time_env: WorkflowEnvironment, tmp_path: Path, fakes: tuple[GithubFake, ArgoCdFake]
) -> None:
    """Argo CD never finishes (its operation stays Running): the sync step fails after its timeout
    saying what it last saw; the revert request merges, but its sync never completes either, so the
    incident says ROLLBACK FAILED instead of "rolled back"."""
    fakes[1].sync_reads = 10**9
    deploy = [
        {"pull_request": {"repo": "config", "merge": "auto"}},
        {"gitops_sync": {"argocd": {"app": "{{ params.service }}"}, "timeout": "2m"}},
    ]
    repo, handle, worker = await start(time_env, tmp_path, fakes, deploy)
    try:
        view = await skip_until(time_env, handle, lambda v: v.stage == Stage.AWAITING_DECISION)
    finally:
        await worker.__aexit__(None, None, None)  # `time_env` ends the incident it left waiting
    (summary,) = view.remediations
    assert summary.outcome == "failed", summary
    assert "not synced within 120s; last seen: revision" in summary.reason
    assert "last sync Running" in summary.reason and "ROLLBACK FAILED" in summary.reason
    pulls = fakes[0].repos["acme/config"].pulls
    assert len(pulls) == 2 and all(p.merged for p in pulls.values())  # fix and revert merged
    assert repo.pool_size() == 5  # the revert is on main; only its sync is missing
    assert "rollback_failed" in kinds(view) and "rolled_back" not in kinds(view)


async def test_a_fix_waiting_for_its_merge_gives_its_turn_to_the_next_incident(
    time_env: WorkflowEnvironment, tmp_path: Path, fakes: tuple[GithubFake, ArgoCdFake]
) -> None:
    """One incident at a time (`max_concurrent: 1`): the first incident's fix waits for a human
    to merge its pull request, which can take hours. The second incident, in line behind it, gets
    its turn meanwhile instead of waiting for that merge (or for the turn's one-hour lease)."""
    deploy = [{"pull_request": {"repo": "config", "merge": "human", "timeout": "3h"}}]
    repo, settings, alertname, worker = await deployment(time_env, tmp_path, fakes, deploy)
    other = "svc-" + uuid.uuid4().hex[:8]
    config = repo.work / CONFIG.format(service=other)
    config.parent.mkdir(parents=True)
    config.write_text("pool:\n  size: 5\n")
    git(repo.work, "add", ".")
    git(repo.work, "commit", "-q", "-m", f"add {other}")
    git(repo.work, "push", "-q", "origin", "main")
    policy = IncidentPolicySnapshot(max_concurrent=1)

    def alert(service: str) -> dict[str, Any]:
        return simple(group=unique_group(), alertname=alertname, service=service)

    queue = settings.temporal.task_queue
    first = await start_incident(
        time_env.client,
        queue,
        simple(group=unique_group(), alertname=alertname, service=repo.service),
        policy,
    )
    try:
        view = await view_when(first, lambda v: "pull_request" in kinds(v))
        second = await start_incident(
            time_env.client, queue, simple(group=unique_group(), alertname=alertname, service=other), policy
        )
        seconds = await view_when(second, lambda v: "pull_request" in kinds(v))
        view = await view_when(first, lambda v: "turn_released" in kinds(v))
    finally:
        await worker.__aexit__(None, None, None)  # `time_env` ends both incidents, still waiting
    (released,) = [e for e in view.timeline if e.kind == "turn_released"]
    assert released.message.startswith("the fix waits for its pull request")
    assert view.stage == Stage.REMEDIATING and not view.remediations
    assert "turn_released" in kinds(seconds)  # the second's own fix gave way in turn
    pulls = fakes[0].repos["acme/config"].pulls
    assert len(pulls) == 2 and not any(p.merged for p in pulls.values())


def test_poll_rules() -> None:
    assert gitops_rules.poll_seconds(300, 86400) == 300
    assert gitops_rules.poll_seconds(60, 30 * 86400) == 30 * 86400 / gitops_rules.MAX_POLLS
    assert gitops_rules.poll_seconds(0.1, 60) == 1.0
