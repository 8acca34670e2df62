"""The kube verbs against a real API server (k3s in Docker), so the test server's answers can be
checked against the real thing. Runs only with SELFHEAL_TEST_DOCKER=1 and a reachable Docker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from connectors.kube.api import KubeApi, KubeError, build_api_client
from connectors.kube.settings import KubeSettings
from connectors.kube.verbs import KubeActions, job_name
from models.plan import KubeAction, KubeWaitAction
from tests.support import services
from tests.support.kube import objects

pytestmark = [
    pytest.mark.skipif(not services.use_docker(), reason="needs SELFHEAL_TEST_DOCKER=1 and Docker"),
    pytest.mark.timeout(600),
]

SINCE = datetime.now(UTC)
IMAGE = "registry.k8s.io/pause:3.10"


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeActions]:
    from testcontainers.community.k3s import K3SContainer

    with K3SContainer(image="rancher/k3s:v1.31.4-k3s1") as k3s:
        path: Path = tmp_path_factory.mktemp("k3s") / "kubeconfig"
        path.write_text(k3s.config_yaml())
        settings = KubeSettings(kubeconfig=path, namespaces=["shop"], lease_namespace="shop", poll_seconds=1)
        api = KubeApi(build_api_client(settings), timeout=30)
        seed(api)
        yield KubeActions(api, settings)
        api.close()


def seed(api: KubeApi) -> None:
    api.call("namespace", api.core.create_namespace, {"metadata": {"name": "shop"}})
    dep = objects.deployment("shop", "web", replicas=2)
    dep.pop("status")
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE
    api.call("deployment", api.apps.create_namespaced_deployment, "shop", dep)
    policy = client.PolicyV1Api(api.api_client)
    pdb = objects.pdb("shop", "web", "web", allowed=0)
    pdb.pop("status")
    pdb["spec"]["minAvailable"] = 3
    api.call("pdb", policy.create_namespaced_pod_disruption_budget, "shop", pdb)
    cron = objects.cronjob("shop", "nightly")
    cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = IMAGE
    api.call("cronjob", api.batch.create_namespaced_cron_job, "shop", cron)


def run(kube: KubeActions, **fields: Any) -> str:
    return kube.run(KubeAction.model_validate(fields), incident_id="inc-k3s", since=SINCE).detail


def wait(kube: KubeActions) -> None:
    result = kube.wait(
        KubeWaitAction(workload="Deployment", namespace="shop", name="web", timeout_seconds=300),
        incident_id="inc-k3s",
    )
    assert result.done, result.detail


def test_restart_scale_and_wait(kube: KubeActions) -> None:
    wait(kube)
    before = kube.api.call("get", kube.api.apps.read_namespaced_deployment, "web", "shop")
    run(kube, verb="rollout_restart", workload="Deployment", namespace="shop", name="web", dry_run=True)
    after = kube.api.call("get", kube.api.apps.read_namespaced_deployment, "web", "shop")
    assert after["metadata"]["generation"] == before["metadata"]["generation"], "dryRun=All persisted nothing"
    run(kube, verb="rollout_restart", workload="Deployment", namespace="shop", name="web")
    wait(kube)
    assert "already restarted" in run(
        kube, verb="rollout_restart", workload="Deployment", namespace="shop", name="web"
    )
    run(kube, verb="scale", workload="Deployment", namespace="shop", name="web", replicas=3, max_replicas=5)
    wait(kube)


def test_eviction_blocked_by_a_real_pdb(kube: KubeActions) -> None:
    wait(kube)
    pods = kube.api.call("pods", kube.api.core.list_namespaced_pod, "shop", label_selector="app=web")["items"]
    name = pods[0]["metadata"]["name"]
    created = datetime.fromisoformat(pods[0]["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    action = KubeAction(verb="evict_pod", namespace="shop", name=name)
    with pytest.raises(KubeError) as err:
        kube.run(action, incident_id="inc-k3s", since=created)
    assert err.value.status == 429 and err.value.retryable


def test_node_and_job_verbs(kube: KubeActions) -> None:
    node = kube.api.call("nodes", kube.api.core.list_node)["items"][0]["metadata"]["name"]
    assert "cordoned" in run(kube, verb="cordon", node=node)
    assert "uncordoned" in run(kube, verb="uncordon", node=node)
    run(kube, verb="job_from_cronjob", namespace="shop", cronjob="nightly")
    assert "already created" in run(kube, verb="job_from_cronjob", namespace="shop", cronjob="nightly")
    job = kube.api.call("job", kube.api.batch.read_namespaced_job, job_name("nightly", "inc-k3s"), "shop")
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"


def test_the_real_server_answers_as_the_test_server_does(kube: KubeActions) -> None:
    api = kube.api
    with pytest.raises(KubeError) as err:
        api.call("dry", api.core.delete_namespaced_pod, "nope", "shop", dry_run="Everything")
    assert err.value.status == 422, "an unknown dryRun value is 422 Invalid"
    with pytest.raises(KubeError) as err:
        api.call("get", api.core.read_namespaced_pod, "nope", "shop")
    assert err.value.status == 404 and err.value.reason == "NotFound"
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 3}}
    with pytest.raises(KubeError) as err:
        api.call(
            "stale",
            api.apps.patch_namespaced_deployment,
            "web",
            "shop",
            stale,
            _content_type="application/merge-patch+json",
        )
    assert err.value.status == 409 and err.value.reason == "Conflict"
