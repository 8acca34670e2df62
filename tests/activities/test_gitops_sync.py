"""The gitops sync wait's decisions (`gitops_sync_start` / `gitops_sync_status`) against the Argo CD
test server (HTTP) and the Kubernetes API test server serving Flux resources (the real
`kubernetes` client), in the shapes those systems send: when a wait is done, keeps waiting, or
has failed for good."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from activities.gitops import GitopsActivities
from connectors.git.repo import GitRepo
from connectors.gitops.argocd import ArgoCd
from connectors.gitops.flux import Flux
from connectors.gitops.settings import ArgoCdSettings, GitopsSettings
from connectors.kube.api import KubeApi, build_api_client
from models.gitops import SyncRequest, SyncState
from models.plan import ArgoTarget, FluxTarget, GitopsSyncAction
from tests.support.forges import ArgoCdFake, ConfigRepo, make_config_repo
from tests.support.kube import KubeFake, kube_settings, objects


@dataclass
class World:
    repo: ConfigRepo
    argo: ArgoCdFake
    kube: KubeFake
    acts: GitopsActivities
    fix: str

    def start(self, action: GitopsSyncAction) -> SyncState:
        req = SyncRequest(incident_id="inc-1", repo="config", action=action, revision=self.fix)
        return asyncio.run(self.acts.gitops_sync_start(req))

    def look(self, action: GitopsSyncAction) -> SyncState:
        req = SyncRequest(incident_id="inc-1", repo="config", action=action, revision=self.fix)
        return asyncio.run(self.acts.gitops_sync_status(req))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    repo = make_config_repo(tmp_path / "repo", "cart")
    with ArgoCdFake() as argo, KubeFake() as kube:
        argo.add_token("argo")
        argo.add_app("cart", repo.remote)
        old = repo.head()
        kube.add(objects.kustomization("flux-system", "apps", applied=f"main@sha1:{old}"))
        kube.add(objects.helm_release("flux-system", "cart", chart_version=f"0.1.0+{old[:12]}"))
        fix = repo.push_to("main", "the fix\n")
        kube.flux_source = lambda: f"main@sha1:{repo.head()}"
        settings = GitopsSettings(argocd=ArgoCdSettings(url=argo.url, token=SecretStr("argo")))
        assert settings.argocd is not None
        api = KubeApi(build_api_client(kube_settings(kube, tmp_path)))
        acts = GitopsActivities(
            settings,
            open_repo=lambda name: GitRepo(repo.work),
            worktrees_dir=tmp_path / "worktrees",
            forge=lambda name: None,
            argocd=lambda: ArgoCd(settings.argocd),  # type: ignore[arg-type]
            flux=lambda: Flux(api, ["flux-system"]),
        )
        yield World(repo, argo, kube, acts, fix)
        api.close()


ARGO = GitopsSyncAction(argocd=ArgoTarget(app="cart"))
KUSTOMIZATION = GitopsSyncAction(flux=FluxTarget(kind="Kustomization", namespace="flux-system", name="apps"))
HELM_RELEASE = GitopsSyncAction(flux=FluxTarget(kind="HelmRelease", namespace="flux-system", name="cart"))


def test_argocd_at_the_revision_but_progressing_keeps_waiting(world: World) -> None:
    world.argo.apps["cart"].health_after_sync = "Progressing"
    state = world.start(ARGO)
    assert not state.done and not state.failed
    assert f"revision {world.fix[:12]}, Synced, Progressing, last sync Succeeded" in state.detail
    world.argo.apps["cart"].health = "Healthy"
    assert world.look(ARGO).done


def test_argocd_degraded_at_the_revision_fails_but_not_before_it(world: World) -> None:
    app = world.argo.apps["cart"]
    app.health = "Degraded"  # the incident: degraded at the old revision
    before = world.look(ARGO)
    assert not before.done and not before.failed
    app.health_after_sync = "Degraded"
    after = world.start(ARGO)
    assert after.failed and not after.done and "Synced, Degraded" in after.detail


def test_argocd_status_before_the_post_sync_reconcile_is_not_trusted(world: World) -> None:
    """The operation finished, but the app has not reconciled since (`reconciledAt` older than
    `finishedAt`): its sync and health status are from before the sync."""
    world.argo.reconcile_reads = 2
    first = world.start(ARGO)
    assert not first.done and "last sync Succeeded" in first.detail
    assert not world.look(ARGO).done
    assert world.look(ARGO).done


def test_argocd_failed_sync_of_the_revision_fails(world: World) -> None:
    world.argo.apps["cart"].fail_next_sync = "one or more objects failed to apply"
    state = world.start(ARGO)
    assert state.failed and "last sync Failed: one or more objects failed to apply" in state.detail


def test_argocd_multi_source_app_is_matched_by_its_git_source(world: World) -> None:
    world.argo.add_app("cart", world.repo.remote, other_sources=("1.4.2",))
    assert world.start(ARGO).done


@pytest.mark.parametrize("form", ["main@sha1:{sha}", "main/{sha}"])  # Flux v2 ≥ 2.1, and before
def test_flux_kustomization_applied_revision_is_matched_to_the_fix(world: World, form: str) -> None:
    world.kube.flux_source = lambda: form.format(sha=world.repo.head())
    world.kube.flux_reads = 2
    running = world.start(KUSTOMIZATION)
    assert not running.done and not running.failed and "Ready=Unknown (Progressing" in running.detail
    done = world.look(KUSTOMIZATION)
    assert done.done and f"applied {world.fix[:12]}, Ready=True" in done.detail


def test_flux_helm_release_is_matched_by_its_chart_version(world: World) -> None:
    state = world.start(HELM_RELEASE)
    assert state.done, state.detail
    assert f"applied {world.fix[:12]}, Ready=True" in state.detail


@pytest.mark.parametrize("action", [KUSTOMIZATION, HELM_RELEASE], ids=["kustomization", "helmrelease"])
def test_flux_failed_reconcile_of_the_revision_fails(world: World, action: GitopsSyncAction) -> None:
    world.kube.flux_failure = "health check failed after 5m0s: timeout waiting for: [Deployment/shop/cart]"
    world.kube.flux_failure_reason = "HealthCheckFailed"
    state = world.start(action)
    assert state.failed and not state.done and "timeout waiting for" in state.detail


def test_flux_failure_of_an_older_revision_keeps_waiting(world: World) -> None:
    """A reconcile that ran the old source revision (the source had not fetched the fix yet) and
    failed says nothing about the fix."""
    old = world.repo.head()
    world.fix = world.repo.push_to("main", "a later fix\n")
    world.kube.flux_source = lambda: f"main@sha1:{old}"
    world.kube.flux_failure = "kustomize build failed"
    state = world.start(KUSTOMIZATION)
    assert not state.failed and not state.done


def test_flux_stalled_fails(world: World) -> None:
    world.kube.flux_failure = "spec.path: path does not exist"
    world.kube.flux_failure_reason = "ArtifactFailed"
    world.kube.flux_stalled = "spec.path: path does not exist"
    world.kube.flux_source = lambda: "main@sha1:" + "0" * 40
    state = world.start(KUSTOMIZATION)
    assert state.failed and "Stalled: spec.path: path does not exist" in state.detail
