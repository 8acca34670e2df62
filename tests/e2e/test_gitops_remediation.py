"""GitOps deploys end to end: the fix goes to a pull request on a forge, a person (or auto-merge)
merges it some time later, Argo CD or Flux syncs it, and only then does verification start.

Real parts throughout: the Temporal dev server, the worker and API over sockets, a bare git remote
as the forge's storage (merges are real merge commits), Prometheus scraping a service whose health
follows the revision Argo CD runs, and the GitHub, GitLab, Argo CD and Kubernetes test servers the
real clients (PyGithub, python-gitlab, httpx, kubernetes) talk to. Nothing waits by sleeping: the
test waits on the fakes' state and on the incident through the API.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from connectors.temporal import connect
from selfheal.settings import Settings
from selfheal.worker import build_worker
from tests.support.app import ApiServer, make_settings, wait_for_incident
from tests.support.forges import (
    ArgoCdFake,
    ConfigRepo,
    GithubFake,
    GitlabFake,
    events,
)
from tests.support.forges.repos import git
from tests.support.kube import KubeFake, objects
from tests.support.payloads import simple
from tests.support.pool import PoolTarget, pool_case, pool_playbook
from workflows.control import ControlWorkflow
from workflows.incident import IncidentWorkflow
from workflows.remediation import RemediationWorkflow

pytestmark = pytest.mark.timeout(240)

SECRET = "github-webhook-secret-" + "x" * 8
HISTORIES = Path(__file__).resolve().parents[1] / "workflows" / "histories"
GITLAB_TOKEN = "gitlab-webhook-token-" + "y" * 8


@dataclass
class World:
    settings: Settings
    api: ApiServer
    http: httpx.AsyncClient
    repo: ConfigRepo
    alertname: str
    github: GithubFake
    gitlab: GitlabFake
    argo: ArgoCdFake
    kube: KubeFake

    @property
    def service(self) -> str:
        return self.repo.service

    @property
    def branch_prefix(self) -> str:
        return "selfheal/"

    async def fire(self) -> str:
        payload = simple(alertname=self.alertname, service=self.service)
        resp = await self.http.post("/api/v1/alerts", json=payload)
        assert resp.status_code == 202, resp.text
        return str(resp.json()["incident_id"])

    async def wait(self, incident_id: str, pred: Any, timeout: float = 120) -> dict[str, Any]:
        return await wait_for_incident(self.http, incident_id, pred, timeout)

    async def github_hook(self, body: dict[str, Any], secret: str = SECRET) -> httpx.Response:
        """A `pull_request` delivery with GitHub's headers (tests/support/forges/events.py)."""
        data, headers = events.github_delivery("pull_request", body, secret)
        async with httpx.AsyncClient(base_url=self.api.url) as raw:
            return await raw.post("/api/v1/gitops/github/webhook", content=data, headers=headers)

    async def gitlab_hook(self, body: dict[str, Any], token: str = GITLAB_TOKEN) -> httpx.Response:
        data, headers = events.gitlab_delivery("Merge Request Hook", body, token)
        async with httpx.AsyncClient(base_url=self.api.url) as raw:
            return await raw.post("/api/v1/gitops/gitlab/webhook", content=data, headers=headers)


@pytest.fixture
async def world_factory(
    temporal_address: str, tmp_path: Path, pool_prom: tuple[str, PoolTarget]
) -> AsyncIterator[Any]:
    prom_url, target = pool_prom
    opened: list[Any] = []

    async def make(
        deploy: list[Any],
        *,
        forge: str = "github",
        pr_poll: float = 3600,
        verify: bool = True,
        **playbook_kw: Any,
    ) -> World:
        github, gitlab, argo, kube = GithubFake(), GitlabFake(), ArgoCdFake(), KubeFake()
        pool = pool_playbook(
            "pool-raise-reviewed",
            "ALERTNAME",
            deploy=deploy,
            require_firing=False,
            verify_timeout="15s" if verify else None,
            **playbook_kw,
        )
        case = pool_case(tmp_path, target, {"pool": pool}, revision=lambda: argo.apps[case.service].revision)
        service, alertname, repo = case.service, case.alertname, case.repo
        for fake in (github, gitlab, argo, kube):
            fake.__enter__()
            opened.append(fake)
        github.add_token("ghp_selfheal-bot", "selfheal-bot")
        github.add_token("ghp_alice", "alice")
        github.add_repo("acme/config", repo.remote)
        gitlab.add_token("glpat-selfheal-bot", "selfheal-bot")
        gitlab.add_token("glpat-alice", "alice")
        gitlab.add_project("acme/config", repo.remote, pipelines=True)
        argo.add_token("argocd-token")
        argo.add_app(service, repo.remote)
        kube.add(objects.kustomization("flux-system", service))
        kube.flux_source = lambda: f"main@sha1:{repo.head()}"
        forges = {
            "github": {
                "kind": "github",
                "url": github.url,
                "project": "acme/config",
                "token": "ghp_selfheal-bot",
            },
            "gitlab": {
                "kind": "gitlab",
                "url": gitlab.url,
                "project": "acme/config",
                "token": "glpat-selfheal-bot",
            },
        }
        settings = make_settings(
            temporal_address,
            tmp_path / service / "data",
            remediation=case.remediation(prom_url),
            gitops={
                "forges": {"config": forges[forge]},
                "argocd": {"url": argo.url, "token": "argocd-token"},
                "github_webhook_secret": SECRET,
                "gitlab_webhook_token": GITLAB_TOKEN,
                "pr_poll_seconds": pr_poll,
                "sync_poll_seconds": 0.2,
            },
            kube={"kubeconfig": str(kube.kubeconfig(tmp_path / service)), "namespaces": ["flux-system"]},
        )
        client = await connect(settings.temporal)
        worker = build_worker(client, settings)
        await worker.__aenter__()
        api = ApiServer(settings).__enter__()
        http = api.client()
        opened.append((worker, api, http))
        return World(settings, api, http, repo, alertname, github, gitlab, argo, kube)

    yield make
    for item in reversed(opened):
        if isinstance(item, tuple):
            worker, api, http = item
            await http.aclose()
            await worker.__aexit__(None, None, None)
            api.__exit__(None, None, None)
        else:
            item.__exit__(None, None, None)


def step_names(view: dict[str, Any]) -> list[str]:
    return [e["message"] for e in view["timeline"] if e["kind"] == "step"]


async def first_pull(world: World) -> Any:
    """The pull request selfheal opens (waiting on the fake's state, not on a clock)."""
    repo = world.github.repos["acme/config"]
    await asyncio.to_thread(
        world.github.wait_for, lambda: bool(repo.pulls) and bool(repo.pulls[min(repo.pulls)].labels)
    )
    return repo.pulls[min(repo.pulls)]


async def test_human_merges_later_then_argocd_syncs_before_verify(world_factory: Any) -> None:
    """The issue's playbook form: a PR a person merges whenever they get to it (the wait is a
    durable timer of an hour, woken by GitHub's webhook), then Argo CD syncs the merge commit,
    and only then does verify start; the service heals because the synced revision has the fix."""
    world: World = await world_factory(
        [
            {"pull_request": {"repo": "config", "merge": "human"}},
            {"gitops_sync": {"argocd": {"app": "{{ params.service }}"}}},
        ]
    )
    incident_id = await world.fire()
    pull = await first_pull(world)
    branch = f"selfheal/{incident_id}"
    assert pull.head == branch and pull.base == "main" and pull.labels == ["selfheal"]
    assert f"`{incident_id}`" in pull.body and "### Diff" in pull.body and "size: 20" in pull.body
    assert "demo_pool_exhausted" in pull.body  # the verify plan
    view = await world.wait(incident_id, lambda v: "pull_request" in [e["kind"] for e in v["timeline"]])
    assert view["stage"] == "remediating" and world.repo.pool_size() == 5
    before = world.argo.apps[world.service].syncs

    # Some time later, alice merges it (over the forge's API) and GitHub tells selfheal.
    async with httpx.AsyncClient(
        base_url=world.github.url, headers={"Authorization": "token ghp_alice"}
    ) as gh:
        resp = await gh.put(f"/repos/acme/config/pulls/{pull.number}/merge", json={"merge_method": "merge"})
        assert resp.status_code == 200, resp.text
    merge_commit = resp.json()["sha"]
    hook = await world.github_hook(
        events.github_pull_request(
            "closed",
            pull.number,
            branch,
            merged=True,
            head_sha=str(pull.merged_head),
            merge_commit_sha=merge_commit,
        )
    )
    assert hook.status_code == 200 and hook.json() == {"status": "woken", "incident_id": incident_id}

    view = await world.wait(incident_id, lambda v: v["stage"] == "closed", timeout=90)
    assert view["outcome"] == "healed", view["timeline"]
    steps = step_names(view)
    merged = next(i for i, s in enumerate(steps) if "pull request merged" in s)
    synced = next(i for i, s in enumerate(steps) if "gitops_sync deploy 2 wait: OK" in s)
    verified = next(i for i, s in enumerate(steps) if s.startswith("[verify]"))
    assert merged < synced < verified, steps
    assert "by alice" in steps[merged] and merge_commit[:12] in steps[merged]
    app = world.argo.apps[world.service]
    assert app.syncs == before + 1 and app.revision == merge_commit
    assert world.repo.pool_size() == 20
    assert len(world.github.repos["acme/config"].pulls) == 1
    assert world.github.requests.count(("POST", "/api/v3/repos/acme/config/pulls")) == 1

    # The waits (timers, the webhook's signal, the polls) replay deterministically.
    client = await connect(world.settings.temporal)
    replayer = Replayer(
        workflows=[IncidentWorkflow, RemediationWorkflow, ControlWorkflow],
        data_converter=pydantic_data_converter,
    )
    for wid in (f"incident-{incident_id.rsplit('-', 1)[0]}", f"remediation-{world.service}"):
        history = await client.get_workflow_handle(wid).fetch_history()
        await replayer.replay_workflow(history)
    # `SELFHEAL_RECORD_HISTORY=remediation-v2-gitops-…` commits this remediation's history, which
    # tests/workflows/test_replay.py then replays with every other committed one.
    name = os.environ.get("SELFHEAL_RECORD_HISTORY", "")
    if name.startswith("remediation-") and "gitops" in name:
        target = HISTORIES / f"{name}.json"
        assert not target.exists(), f"{target} exists: committed histories are never overwritten"
        target.write_text(history.to_json())


async def test_pull_request_closed_unmerged_escalates_with_the_reason(world_factory: Any) -> None:
    world: World = await world_factory(
        [
            {"pull_request": {"repo": "config", "merge": "human"}},
            {"gitops_sync": {"argocd": {"app": "{{ params.service }}"}}},
        ],
        pr_poll=1,
    )
    incident_id = await world.fire()
    pull = await first_pull(world)
    async with httpx.AsyncClient(
        base_url=world.github.url, headers={"Authorization": "token ghp_alice"}
    ) as gh:
        await gh.post(
            f"/repos/acme/config/issues/{pull.number}/comments", json={"body": "Not during the freeze."}
        )
        resp = await gh.patch(f"/repos/acme/config/pulls/{pull.number}", json={"state": "closed"})
        assert resp.status_code == 200
    view = await world.wait(incident_id, lambda v: v["stage"] == "awaiting_decision", timeout=60)
    reason = view["remediations"][0]["reason"]
    assert view["remediations"][0]["outcome"] == "failed"
    assert "closed without merging by alice" in reason and "Not during the freeze." in reason
    assert "nothing was deployed" in reason
    assert world.repo.pool_size() == 5 and world.argo.apps[world.service].syncs == 0


async def test_head_moved_is_not_merged_and_escalates(world_factory: Any) -> None:
    """Someone pushes to selfheal's branch: with `merge: auto` selfheal must not merge it."""
    world: World = await world_factory(
        [{"pull_request": {"repo": "config", "merge": "auto"}}],
        pr_poll=1,
        verify=False,
    )
    world.github.repos["acme/config"].required_check = True  # so it cannot merge at once
    incident_id = await world.fire()
    pull = await first_pull(world)
    await asyncio.to_thread(world.github.wait_for, lambda: pull.auto_merge is not None)
    moved = await asyncio.to_thread(world.repo.push_to, pull.head, "teammate was here\n")
    view = await world.wait(incident_id, lambda v: v["stage"] == "awaiting_decision", timeout=60)
    reason = view["remediations"][0]["reason"]
    assert "head moved" in reason and moved[:12] in reason, reason
    assert pull.state == "open" and not pull.merged and pull.auto_merge is None
    assert any("selfheal will not merge it" in c["body"] for c in pull.comments)
    assert world.repo.pool_size() == 5


async def test_failed_verify_rolls_back_through_a_merged_and_synced_revert_pr(world_factory: Any) -> None:
    """The fix does not hold (pool 5 → 10, still exhausted): selfheal opens a revert PR, which
    auto-merge merges, Argo CD syncs it, and only then does the incident say rolled back."""
    world: World = await world_factory(
        [
            {"pull_request": {"repo": "config", "merge": "auto"}},
            {"gitops_sync": {"argocd": {"app": "{{ params.service }}"}}},
        ],
        pr_poll=1,
        scale=2,
    )
    incident_id = await world.fire()
    view = await world.wait(incident_id, lambda v: v["stage"] == "awaiting_decision", timeout=120)
    summary = view["remediations"][0]
    assert summary["outcome"] == "rolled_back", view["timeline"]
    pulls = world.github.repos["acme/config"].pulls
    assert [p.head for p in pulls.values()] == [f"selfheal/{incident_id}", f"selfheal/{incident_id}-revert"]
    assert all(p.merged for p in pulls.values())
    revert = pulls[max(pulls)]
    assert world.argo.apps[world.service].revision == revert.merge_commit_sha
    assert world.repo.pool_size() == 5
    kinds = [e["kind"] for e in view["timeline"]]
    assert kinds.index("rolling_back") < kinds.index("rolled_back")
    rolled = next(e["message"] for e in view["timeline"] if e["kind"] == "rolled_back")
    assert f"revert pull request #{revert.number} merged" in rolled and "synced" in rolled


async def test_gitlab_merge_is_the_approval_then_flux_reconciles(world_factory: Any) -> None:
    """An `approve` playbook whose merge is the approval: the merge request opens at once, a
    person's merge approves and deploys it, Flux reconciles to the merge commit."""
    world: World = await world_factory(
        [
            {"pull_request": {"repo": "config", "merge": "human", "merge_approves": True}},
            {
                "gitops_sync": {
                    "flux": {
                        "kind": "Kustomization",
                        "namespace": "flux-system",
                        "name": "{{ params.service }}",
                    }
                }
            },
        ],
        forge="gitlab",
        mode="approve",
        verify=False,
    )
    incident_id = await world.fire()
    project = world.gitlab.projects["acme/config"]
    await asyncio.to_thread(world.gitlab.wait_for, lambda: bool(project.mrs))
    mr = project.mrs[1]
    world.gitlab.pipeline_succeeds("acme/config", mr.iid)
    async with httpx.AsyncClient(base_url=world.gitlab.url, headers={"PRIVATE-TOKEN": "glpat-alice"}) as gl:
        resp = await gl.put(f"/api/v4/projects/acme%2Fconfig/merge_requests/{mr.iid}/merge", json={})
        assert resp.status_code == 200, resp.text
    hook = await world.gitlab_hook(
        events.gitlab_merge_request(
            "merge",
            mr.iid,
            mr.source_branch,
            head_sha=str(mr.merged_head),
            merge_commit_sha=mr.merge_commit_sha,
        )
    )
    assert hook.json()["status"] == "woken"
    view = await world.wait(incident_id, lambda v: v["stage"] == "closed", timeout=90)
    assert view["outcome"] == "healed_after_approval", view["timeline"]
    assert view["remediations"][0]["approved_by"] == "alice"
    status = world.kube.get("Kustomization", "flux-system", world.service)["status"]  # type: ignore[index]
    assert status["lastAppliedRevision"] == f"main@sha1:{mr.merge_commit_sha}"
    assert world.repo.pool_size() == 20


async def test_a_person_merging_a_moved_head_takes_it_over(world_factory: Any) -> None:
    """A teammate pushes to selfheal's branch and alice merges it: deployed, but not what selfheal
    made and tested, so it neither verifies nor reverts it; it says so and escalates."""
    world: World = await world_factory(
        [
            {"pull_request": {"repo": "config", "merge": "human"}},
            {"gitops_sync": {"argocd": {"app": "{{ params.service }}"}}},
        ]
    )
    incident_id = await world.fire()
    pull = await first_pull(world)
    await world.wait(incident_id, lambda v: "pull_request" in [e["kind"] for e in v["timeline"]])
    moved = await asyncio.to_thread(world.repo.push_to, pull.head, "teammate was here\n")
    async with httpx.AsyncClient(
        base_url=world.github.url, headers={"Authorization": "token ghp_alice"}
    ) as gh:
        resp = await gh.put(f"/repos/acme/config/pulls/{pull.number}/merge", json={})
        assert resp.status_code == 200, resp.text
    await world.github_hook(
        events.github_pull_request("closed", pull.number, pull.head, merged=True, head_sha=moved)
    )
    view = await world.wait(incident_id, lambda v: v["stage"] == "awaiting_decision", timeout=60)
    reason = view["remediations"][0]["reason"]
    assert f"to {moved[:12]}" in reason and "a person merged it anyway" in reason, reason
    assert reason.endswith("not verified, not rolled back")
    assert len(world.github.repos["acme/config"].pulls) == 1  # no revert request
    assert world.argo.apps[world.service].syncs == 0 and world.repo.pool_size() == 20


async def test_git_push_then_argocd_sync_rolls_back_with_a_synced_revert_commit(world_factory: Any) -> None:
    """Without review: the fix is pushed to main and synced; it does not hold, so the revert commit
    is pushed and synced too before the incident says rolled back."""
    world: World = await world_factory(
        [{"git_push": {"branch": "main"}}, {"gitops_sync": {"argocd": {"app": "{{ params.service }}"}}}],
        scale=2,
    )
    incident_id = await world.fire()
    view = await world.wait(incident_id, lambda v: v["stage"] == "awaiting_decision", timeout=120)
    assert view["remediations"][0]["outcome"] == "rolled_back", view["timeline"]
    app = world.argo.apps[world.service]
    assert app.syncs == 2 and app.revision == world.repo.head()
    head_message = git(world.repo.remote, "log", "-1", "--format=%B", "main")
    assert f"Selfheal-Rollback: {incident_id}" in head_message and world.repo.pool_size() == 5
    rolled = next(e["message"] for e in view["timeline"] if e["kind"] == "rolled_back")
    assert rolled == f"revert {app.revision[:12]} pushed to origin/main and synced: rolled back"
    assert not world.github.repos["acme/config"].pulls
