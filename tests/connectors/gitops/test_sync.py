"""Argo CD against its test server (httpx) and Flux against the Kubernetes API test server (the
real `kubernetes` client's CustomObjectsApi): the sync request, what each reports, and refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.gitops.argocd import ArgoCd, ArgoError
from connectors.gitops.flux import Flux, chart_commit, revision_sha
from connectors.gitops.settings import ArgoCdSettings
from connectors.kube.api import KubeApi, KubeError, build_api_client
from tests.support.forges import ArgoCdFake, ConfigRepo, make_config_repo
from tests.support.kube import KubeFake, kube_settings, objects


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    return make_config_repo(tmp_path / "repo", "cart")


@pytest.fixture
def argo(repo: ConfigRepo) -> Iterator[ArgoCdFake]:
    with ArgoCdFake() as fake:
        fake.add_token("admin")
        fake.add_token("shop-only", {"shop"})
        fake.add_app("cart", repo.remote, project="shop")
        fake.add_app("billing/ledger", repo.remote, project="finance")
        yield fake


def client(fake: ArgoCdFake, token: str = "admin") -> ArgoCd:
    return ArgoCd(ArgoCdSettings(url=fake.url, token=SecretStr(token)))


def test_argocd_sync_then_synced_at_the_new_head(argo: ArgoCdFake, repo: ConfigRepo) -> None:
    before = repo.head()
    repo.push_to("main", "a change\n")
    cd = client(argo)
    app = cd.get("cart")
    assert (app.revision, app.sync_status, app.health) == (before, "OutOfSync", "Healthy")
    argo.sync_reads = 2
    assert cd.sync("cart") == "sync started"
    assert cd.sync("cart") == "a sync was already running"  # Argo CD's 400, taken as "watch that one"
    assert argo.apps["cart"].operation is not None and argo.apps["cart"].phase == ""
    running = cd.get("cart")
    assert running.phase == "Running" and running.revision == before and not running.settled
    done = cd.get("cart")
    assert (done.revision, done.sync_status, done.health, done.phase) == (
        repo.head(),
        "Synced",
        "Healthy",
        "Succeeded",
    )
    assert done.settled and not done.operation_requested and done.finished_at is not None
    assert done.describe().startswith(f"revision {repo.head()[:12]}, Synced, Healthy")


def test_argocd_requested_sync_is_not_settled_until_reconciled(argo: ArgoCdFake, repo: ConfigRepo) -> None:
    """Right after `POST .../sync` Argo CD has set `operation` and cleared `operationState`; after
    the operation finishes, the app's status is stale until it reconciles (`reconciledAt`)."""
    repo.push_to("main", "a change\n")
    argo.reconcile_reads = 1
    cd = client(argo)
    cd.sync("cart")
    argo.sync_reads = 10**9
    requested = cd.get("cart")  # the controller picks it up: Running
    assert requested.phase == "Running" and requested.operation_requested and not requested.settled
    argo.sync_reads = 1
    finished = cd.get("cart")
    assert finished.phase == "Succeeded" and not finished.operation_requested
    assert finished.revision != repo.head() and not finished.settled  # reconciledAt < finishedAt
    reconciled = cd.get("cart")
    assert reconciled.revision == repo.head() and reconciled.settled


def test_argocd_multi_source_app_reports_each_source(argo: ArgoCdFake, repo: ConfigRepo) -> None:
    argo.add_app("multi", repo.remote, project="shop", other_sources=("1.4.2",))
    app = client(argo).get("multi")
    assert app.revision == "" and app.running == (repo.head(), "1.4.2")


def test_argocd_failed_sync_is_reported_with_its_message(argo: ArgoCdFake) -> None:
    argo.apps["cart"].fail_next_sync = "one or more objects failed to apply: admission webhook denied"
    cd = client(argo)
    cd.sync("cart")
    app = cd.get("cart")
    assert app.phase == "Failed" and "admission webhook denied" in app.describe()


def test_argocd_apps_in_any_namespace(argo: ArgoCdFake, repo: ConfigRepo) -> None:
    app = client(argo).get("billing/ledger")
    assert app.name == "billing/ledger" and app.revision == repo.head()


def test_argocd_refusals(argo: ArgoCdFake) -> None:
    with pytest.raises(ArgoError) as bad:
        client(argo, "expired").get("cart")
    assert bad.value.status == 401 and not bad.value.retryable and "gitops.argocd.token" in str(bad.value)
    # Without a project in the request, Argo CD answers an unknown app and a forbidden one alike.
    with pytest.raises(ArgoError) as missing:
        client(argo).sync("nope")
    with pytest.raises(ArgoError) as denied:
        client(argo, "shop-only").sync("billing/ledger")
    for err in (missing.value, denied.value):
        assert err.status == 403 and not err.retryable
        assert "permission denied (the application does not exist, or the token's" in str(err)
    assert client(argo, "shop-only").sync("cart") == "sync started"


def test_argocd_sync_refused_by_role_or_sync_window(argo: ArgoCdFake) -> None:
    argo.add_token("read-only", {"shop"}, actions={"get"})
    assert client(argo, "read-only").get("cart").name == "cart"
    with pytest.raises(ArgoError) as role:
        client(argo, "read-only").sync("cart")
    assert role.value.status == 403 and "permission denied: applications, sync, shop/cart" in str(role.value)
    argo.sync_window_blocked = True
    with pytest.raises(ArgoError) as window:
        client(argo).sync("cart")
    assert window.value.status == 403 and not window.value.retryable
    assert "blocked by sync window" in str(window.value) and "token" not in str(window.value)
    assert argo.apps["cart"].syncs == 0


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[KubeFake, Flux]]:
    with KubeFake() as fake:
        fake.add(objects.kustomization("flux-system", "apps", applied="main@sha1:" + "1" * 40))
        fake.add(objects.helm_release("flux-system", "cart", chart_version="0.1.0+" + "1" * 12))
        api = KubeApi(build_api_client(kube_settings(fake, tmp_path)))
        yield fake, Flux(api, ["flux-system"])
        api.close()


@pytest.mark.parametrize("kind", ["Kustomization", "HelmRelease"])
def test_flux_reconcile_request_is_handled_at_the_source_revision(
    kube: tuple[KubeFake, Flux], kind: str
) -> None:
    fake, flux = kube
    name = "apps" if kind == "Kustomization" else "cart"
    revision = "2" * 40
    fake.flux_source = lambda: f"main@sha1:{revision}"
    fake.flux_reads = 2
    before = flux.status(kind, "flux-system", name)
    assert before.applied_commit.startswith("1" * 12) and before.ready == "True"
    assert not before.handled_request
    flux.request_reconcile(kind, "flux-system", name, "selfheal-abc")
    running = flux.status(kind, "flux-system", name)
    assert (running.ready, running.reason) == ("Unknown", "Progressing") and not running.handled_request
    after = flux.status(kind, "flux-system", name)
    assert after.requested == after.handled == "selfheal-abc" and after.handled_request
    assert revision.startswith(after.applied_commit) and after.ready == "True"
    if kind == "HelmRelease":  # helm-controller v2: the chart version, the commit in its metadata
        assert after.applied == "0.1.0+" + "2" * 12 and after.reason == "UpgradeSucceeded"
    else:
        assert after.applied == f"main@sha1:{revision}" and after.reason == "ReconciliationSucceeded"
    patch = [c for c in fake.calls("patch") if c.name == name]
    assert patch and patch[0].group.endswith("toolkit.fluxcd.io")


@pytest.mark.parametrize("kind", ["Kustomization", "HelmRelease"])
def test_flux_failure_is_seen(kube: tuple[KubeFake, Flux], kind: str) -> None:
    fake, flux = kube
    name = "apps" if kind == "Kustomization" else "cart"
    fake.flux_source = lambda: "main@sha1:" + "3" * 40
    fake.flux_failure = "kustomize build failed: accumulating resources"
    flux.request_reconcile(kind, "flux-system", name, "selfheal-x")
    status = flux.status(kind, "flux-system", name)
    assert status.ready == "False" and status.applied_commit.startswith("1" * 12) and status.handled_request
    assert status.attempted_commit.startswith("3" * 12) and status.observed_generation == 1
    reason = "ReconciliationFailed" if kind == "Kustomization" else "UpgradeFailed"
    assert reason in status.describe() and "accumulating resources" in status.describe()


def test_flux_unknown_resource_is_a_404(kube: tuple[KubeFake, Flux]) -> None:
    _, flux = kube
    with pytest.raises(KubeError) as err:
        flux.status("Kustomization", "flux-system", "nope")
    assert err.value.status == 404 and not err.value.retryable


@pytest.mark.parametrize(
    ("text", "sha"),
    [
        ("main@sha1:" + "a" * 40, "a" * 40),
        ("main/" + "b" * 40, "b" * 40),
        ("c" * 40, "c" * 40),
        ("v1.2.3@sha256:" + "d" * 64, ""),
        ("", ""),
    ],
)
def test_revision_sha(text: str, sha: str) -> None:
    assert revision_sha(text) == sha


@pytest.mark.parametrize(
    ("version", "sha"),
    [
        ("0.1.0+0123456789ab", "0123456789ab"),
        ("0.1.0+0123456789ab.3", "0123456789ab"),  # values files add the generation
        ("0.1.0+3", ""),
        ("6.2.1", ""),
        ("", ""),
    ],
)
def test_chart_commit(version: str, sha: str) -> None:
    assert chart_commit(version) == sha


def test_flux_namespace_outside_the_allow_list_is_refused(kube: tuple[KubeFake, Flux]) -> None:
    fake, flux = kube
    fake.add(objects.kustomization("other", "apps"))
    with pytest.raises(KubeError) as err:
        flux.request_reconcile("Kustomization", "other", "apps", "selfheal-x")
    assert "not in kube.namespaces (allowed: flux-system)" in str(err.value) and not err.value.retryable
    assert not [c for c in fake.calls("patch") if c.namespace == "other"]
