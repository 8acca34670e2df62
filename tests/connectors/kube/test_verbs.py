"""Each kube verb through the real `kubernetes` client against the Kubernetes API test server:
what it changes, what it refuses, what a retry does, and that a dry run persists nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.kube.api import KubeError
from connectors.kube.verbs import BUDGET_RULES, VERB_RULES, KubeActions, job_name
from models.plan import KubeAction, KubeWaitAction
from tests.support.kube import KubeFake, actions_for, objects

pytestmark = pytest.mark.timeout(30)

INCIDENT = "inc-7"
#: The alert's start: pods created before it are the ones a verb may remove.
SINCE = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[KubeFake]:
    with KubeFake() as server:
        server.add(
            objects.deployment("shop", "cart"),
            objects.replicaset("shop", "cart-5d4f", "cart"),
            objects.statefulset("shop", "db"),
            objects.daemonset("shop", "agent"),
            objects.node("node-1"),
            objects.node("node-2"),
            objects.storageclass("standard", expandable=True),
            objects.storageclass("fixed", expandable=False),
        )
        yield server


@pytest.fixture
def kube(fake: KubeFake, tmp_path: Path) -> KubeActions:
    return actions_for(fake, tmp_path)


def act(verb: str, **fields: Any) -> KubeAction:
    return KubeAction.model_validate({"verb": verb, **fields})


def run(kube: KubeActions, action: KubeAction, incident: str = INCIDENT) -> str:
    return kube.run(action, incident_id=incident, since=SINCE).detail


def rv(fake: KubeFake, kind: str, ns: str | None, name: str) -> str:
    obj = fake.get(kind, ns, name)
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])


def writes(fake: KubeFake) -> list[str]:
    return [f"{c.verb} {c.resource}/{c.name}" for c in fake.requests if c.verb not in ("get", "list")]


# --- rollout_restart ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind,name", [("Deployment", "cart"), ("StatefulSet", "db"), ("DaemonSet", "agent")])
def test_rollout_restart_sets_restarted_at_once_per_incident(
    fake: KubeFake, kube: KubeActions, kind: str, name: str
) -> None:
    action = act("rollout_restart", workload=kind, namespace="shop", name=name)
    assert "rollout restarted" in run(kube, action)
    obj = fake.get(kind, "shop", name)
    assert obj is not None
    assert "kubectl.kubernetes.io/restartedAt" in obj["spec"]["template"]["metadata"]["annotations"]
    assert obj["metadata"]["generation"] == 2, "a pod-template change is a spec change"
    before = rv(fake, kind, "shop", name)
    assert "already restarted" in run(kube, action), "a retried activity does not restart twice"
    assert rv(fake, kind, "shop", name) == before


def test_rollout_restart_dry_run_persists_nothing(fake: KubeFake, kube: KubeActions) -> None:
    before = rv(fake, "Deployment", "shop", "cart")
    detail = run(
        kube, act("rollout_restart", workload="Deployment", namespace="shop", name="cart", dry_run=True)
    )
    assert detail.startswith("(server-side dry run)")
    assert rv(fake, "Deployment", "shop", "cart") == before
    assert any(c.verb == "patch" for c in fake.requests), "the write was sent, with dryRun=All"
    assert fake.get("Lease", "selfheal", "selfheal-inflight-cluster-0") is None, "a dry run takes no slot"


def test_missing_workload_is_not_retryable(kube: KubeActions) -> None:
    with pytest.raises(KubeError) as err:
        run(kube, act("rollout_restart", workload="Deployment", namespace="shop", name="gone"))
    assert err.value.status == 404 and not err.value.retryable
    assert "deployment shop/gone not found" in str(err.value)


def test_a_stale_resource_version_is_a_retryable_conflict(fake: KubeFake, kube: KubeActions) -> None:
    """Every verb patches with the resourceVersion it read: a write in between answers 409."""
    api = kube.api
    body = {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 4}}
    with pytest.raises(KubeError) as err:
        api.call(
            "patch",
            api.apps.patch_namespaced_deployment,
            "cart",
            "shop",
            body,
            _content_type="application/merge-patch+json",
        )
    assert err.value.status == 409 and err.value.reason == "Conflict" and err.value.retryable
    assert fake.get("Deployment", "shop", "cart")["spec"]["replicas"] == 3  # type: ignore[index]


def test_an_unknown_dry_run_value_is_rejected_as_the_api_server_does(kube: KubeActions) -> None:
    api = kube.api
    with pytest.raises(KubeError) as err:
        api.call("delete", api.core.delete_namespaced_pod, "x", "shop", dry_run="Everything")
    assert err.value.status == 422 and "Unsupported value" in str(err.value) and not err.value.retryable


def test_a_bad_token_is_not_retryable_and_points_at_rbac(fake: KubeFake, tmp_path: Path) -> None:
    fake.token = "rotated"
    kube = actions_for(fake, tmp_path)
    fake.token = "another"
    with pytest.raises(KubeError) as err:
        run(kube, act("cordon", node="node-1"))
    assert err.value.status == 401 and not err.value.retryable and "RBAC" in str(err.value)


# --- scale ----------------------------------------------------------------------------------------


def test_scale_up_within_bounds_and_retry(fake: KubeFake, kube: KubeActions) -> None:
    action = act("scale", workload="Deployment", namespace="shop", name="cart", replicas=6, max_replicas=10)
    assert run(kube, action) == "Deployment shop/cart: replicas 3 → 6"
    dep = fake.get("Deployment", "shop", "cart")
    assert dep is not None and dep["spec"]["replicas"] == 6 and dep["metadata"]["generation"] == 2
    assert "already has 6" in run(kube, action)
    assert fake.get("Lease", "selfheal", "selfheal-inflight-cluster-0") is None, "scaling up disrupts nothing"


@pytest.mark.parametrize(
    "replicas,max_replicas,settings,message",
    [
        (12, 20, {"max_replicas": 10}, "above the cap 10"),
        (0, 5, {}, "below kube.min_replicas"),
        (1, 5, {"min_ready_fraction": 0.5}, "below the floor 2"),
    ],
)
def test_scale_refuses_outside_its_bounds(
    fake: KubeFake, tmp_path: Path, replicas: int, max_replicas: int, settings: dict[str, Any], message: str
) -> None:
    kube = actions_for(fake, tmp_path, **settings)
    action = act(
        "scale",
        workload="Deployment",
        namespace="shop",
        name="cart",
        replicas=replicas,
        max_replicas=max_replicas,
    )
    with pytest.raises(KubeError) as err:
        run(kube, action)
    assert message in str(err.value) and not err.value.retryable
    assert writes(fake) == []


def test_scale_down_takes_an_in_flight_slot(fake: KubeFake, kube: KubeActions) -> None:
    run(kube, act("scale", workload="StatefulSet", namespace="shop", name="db", replicas=2, max_replicas=5))
    assert fake.get("StatefulSet", "shop", "db")["spec"]["replicas"] == 2  # type: ignore[index]
    lease = fake.get("Lease", "shop", "selfheal-inflight-0")
    assert lease is not None and lease["spec"]["holderIdentity"] == INCIDENT


def test_the_api_server_rejects_negative_replicas(kube: KubeActions) -> None:
    api = kube.api
    with pytest.raises(KubeError) as err:
        api.call(
            "scale",
            api.apps.patch_namespaced_deployment_scale,
            "cart",
            "shop",
            {"spec": {"replicas": -1}},
            _content_type="application/merge-patch+json",
        )
    assert err.value.status == 422 and err.value.reason == "Invalid"


# --- delete_pod and evict_pod ---------------------------------------------------------------------


def cart_pod(name: str = "cart-5d4f-abcde", **kw: Any) -> dict[str, Any]:
    return objects.pod("shop", name, owner=("ReplicaSet", "cart-5d4f"), labels={"app": "cart"}, **kw)


@pytest.mark.parametrize("verb", ["delete_pod", "evict_pod"])
def test_removing_a_pod_and_retrying(fake: KubeFake, kube: KubeActions, verb: str) -> None:
    fake.add(cart_pod())
    action = act(verb, namespace="shop", name="cart-5d4f-abcde")
    assert "2 of 3 ready after" in run(kube, action)
    terminating = fake.get("Pod", "shop", "cart-5d4f-abcde")  # a running pod: until its kubelet stops it
    assert terminating is not None and terminating["metadata"]["deletionTimestamp"]
    assert "already terminating" in run(kube, action)
    fake.finish_terminations()
    assert "already gone" in run(kube, action)


@pytest.mark.parametrize("verb", ["delete_pod", "evict_pod"])
def test_a_pod_created_since_the_alert_is_left_alone(fake: KubeFake, kube: KubeActions, verb: str) -> None:
    """A StatefulSet pod keeps its name: after a retry the pod there is the replacement."""
    fake.add(objects.pod("shop", "db-0", owner=("StatefulSet", "db"), created="2025-03-01T00:05:00Z"))
    assert "already replaced" in run(kube, act(verb, namespace="shop", name="db-0"))
    assert fake.get("Pod", "shop", "db-0") is not None


def test_a_pod_without_controller_is_refused(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(objects.pod("shop", "debug"))
    with pytest.raises(KubeError, match="no controller") as err:
        run(kube, act("delete_pod", namespace="shop", name="debug"))
    assert not err.value.retryable and fake.get("Pod", "shop", "debug") is not None


def test_ready_pod_floor(fake: KubeFake, tmp_path: Path) -> None:
    fake.add(objects.replicaset("shop", "cart-5d4f", "cart", replicas=4, ready=2), cart_pod())
    kube = actions_for(fake, tmp_path, min_ready_fraction=0.5)
    with pytest.raises(KubeError, match=r"would have 1 ready of 4 \(floor 2") as err:
        run(kube, act("evict_pod", namespace="shop", name="cart-5d4f-abcde"))
    assert not err.value.retryable
    fake.add(cart_pod("cart-5d4f-crash", ready=False))
    assert "evicted" in run(kube, act("evict_pod", namespace="shop", name="cart-5d4f-crash")), (
        "a pod that is not ready can go: the ready count does not drop"
    )


def test_eviction_blocked_by_a_pod_disruption_budget_is_retryable(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(cart_pod(), objects.pdb("shop", "cart", "cart", allowed=0))
    with pytest.raises(KubeError) as err:
        run(kube, act("evict_pod", namespace="shop", name="cart-5d4f-abcde"))
    assert err.value.status == 429 and err.value.retryable
    assert "blocked by its PodDisruptionBudget" in str(err.value) and "needs 2 healthy pods" in str(err.value)
    assert fake.get("Pod", "shop", "cart-5d4f-abcde") is not None


def test_eviction_against_a_budget_its_controller_has_not_observed_is_retryable(
    fake: KubeFake, kube: KubeActions
) -> None:
    """eviction.go `checkAndDecrement`: a PDB whose status lags its spec blocks with 429 (retry
    after 10 s) even though its stale status allows a disruption."""
    budget = objects.pdb("shop", "cart", "cart", allowed=1)
    budget["metadata"]["generation"] = 2
    fake.add(cart_pod(), budget)
    with pytest.raises(KubeError) as err:
        run(kube, act("evict_pod", namespace="shop", name="cart-5d4f-abcde"))
    assert err.value.status == 429 and err.value.retryable
    assert "The disruption budget cart is still being processed by the server." in str(err.value)
    assert fake.get("Pod", "shop", "cart-5d4f-abcde") is not None


def test_eviction_respects_and_spends_the_budget(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(cart_pod(), objects.pdb("shop", "cart", "cart", allowed=1))
    run(kube, act("evict_pod", namespace="shop", name="cart-5d4f-abcde", dry_run=True))
    assert fake.get("Pod", "shop", "cart-5d4f-abcde") is not None, "dry run: still there"
    assert fake.get("PodDisruptionBudget", "shop", "cart")["status"]["disruptionsAllowed"] == 1  # type: ignore[index]
    run(kube, act("evict_pod", namespace="shop", name="cart-5d4f-abcde"))
    assert fake.get("PodDisruptionBudget", "shop", "cart")["status"]["disruptionsAllowed"] == 0  # type: ignore[index]


# --- nodes ----------------------------------------------------------------------------------------


def test_cordon_and_uncordon_are_idempotent(fake: KubeFake, kube: KubeActions) -> None:
    assert run(kube, act("cordon", node="node-1")) == "node node-1 cordoned"
    assert fake.get("Node", None, "node-1")["spec"]["unschedulable"] is True  # type: ignore[index]
    assert run(kube, act("cordon", node="node-1")) == "node node-1 already cordoned"
    assert run(kube, act("uncordon", node="node-1")) == "node node-1 uncordoned"
    assert fake.get("Node", None, "node-1")["spec"]["unschedulable"] is False  # type: ignore[index]
    with pytest.raises(KubeError, match="node node-9 not found"):
        run(kube, act("cordon", node="node-9"))


def test_drain_evicts_all_but_daemonset_and_mirror_pods(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(
        cart_pod(node="node-1"),
        objects.pod("kube-system", "agent-x", owner=("DaemonSet", "agent"), node="node-1"),
        objects.pod(
            "kube-system", "etcd-node-1", node="node-1", annotations={"kubernetes.io/config.mirror": "abc"}
        ),
        objects.pod("batch", "done", node="node-1", phase="Succeeded"),
        cart_pod("cart-5d4f-other", node="node-2"),
    )
    detail = run(kube, act("drain", node="node-1"))
    assert "node node-1 cordoned; evicted 2 pods" in detail and "2 DaemonSet or mirror pods left" in detail
    evicted = fake.get("Pod", "shop", "cart-5d4f-abcde")
    assert evicted is not None and evicted["metadata"]["deletionTimestamp"], "terminating"
    assert fake.get("Pod", "batch", "done") is None, "a finished pod goes at once"
    assert fake.get("Pod", "kube-system", "agent-x") is not None
    assert fake.get("Pod", "shop", "cart-5d4f-other") is not None, "only that node's pods"
    again = run(kube, act("drain", node="node-1"))
    assert "evicted 0 pods (0 already gone, 1 already terminating" in again
    assert len([c for c in fake.calls("create") if c.resource == "pods/eviction"]) == 2


def test_drain_refuses_before_cordoning(fake: KubeFake, tmp_path: Path) -> None:
    fake.add(objects.pod("shop", "hand-made", node="node-1"))
    with pytest.raises(KubeError, match="hand-made has no controller"):
        run(actions_for(fake, tmp_path), act("drain", node="node-1"))
    fake.add(objects.node("node-2", ready=False))
    with pytest.raises(KubeError, match="0 other ready, schedulable nodes"):
        run(actions_for(fake, tmp_path, min_ready_nodes=1), act("drain", node="node-1"))
    assert not fake.get("Node", None, "node-1")["spec"].get("unschedulable")  # type: ignore[index]


def test_drain_blocked_by_a_budget_stays_cordoned_and_is_retryable(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(cart_pod(node="node-1"), objects.pdb("shop", "cart", "cart", allowed=0))
    with pytest.raises(KubeError, match="1 evictions blocked") as err:
        run(kube, act("drain", node="node-1"))
    assert err.value.retryable
    assert fake.get("Node", None, "node-1")["spec"]["unschedulable"] is True  # type: ignore[index]


# --- resize_pvc -----------------------------------------------------------------------------------


def test_resize_pvc_grows_capped_and_once(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(objects.pvc("shop", "data", size="100Gi"))
    action = act("resize_pvc", namespace="shop", name="data", scale=1.5, max_size="120Gi")
    assert run(kube, action) == "PVC shop/data: storage 100Gi → 120Gi"
    assert (
        fake.get("PersistentVolumeClaim", "shop", "data")["spec"]["resources"]["requests"]["storage"]
        == "120Gi"
    )  # type: ignore[index]
    assert "already resized" in run(kube, action)
    assert "at or above max_size" in run(kube, action, incident="inc-8")


def test_resize_pvc_keeps_exact_units(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(objects.pvc("shop", "logs", size="1500Mi"))
    run(kube, act("resize_pvc", namespace="shop", name="logs", scale=1.5, max_size="10Gi"))
    assert (
        fake.get("PersistentVolumeClaim", "shop", "logs")["spec"]["resources"]["requests"]["storage"]
        == "2250Mi"
    )  # type: ignore[index]


def test_resize_pvc_refuses_a_class_without_expansion(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(objects.pvc("shop", "data", storage_class="fixed"))
    with pytest.raises(KubeError, match="StorageClass fixed does not allow volume expansion") as err:
        run(kube, act("resize_pvc", namespace="shop", name="data", scale=2, max_size="50Gi"))
    assert not err.value.retryable and writes(fake) == []


def test_the_api_server_refuses_shrinking_a_pvc(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(objects.pvc("shop", "data"))
    api = kube.api
    body = {"spec": {"resources": {"requests": {"storage": "5Gi"}}}}
    with pytest.raises(KubeError) as err:
        api.call(
            "shrink",
            api.core.patch_namespaced_persistent_volume_claim,
            "data",
            "shop",
            body,
            _content_type="application/strategic-merge-patch+json",
        )
    assert err.value.status == 422 and "can not be less than previous value" in str(err.value)


def test_resize_pvc_dry_run_persists_nothing(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(objects.pvc("shop", "data"))
    before = rv(fake, "PersistentVolumeClaim", "shop", "data")
    run(kube, act("resize_pvc", namespace="shop", name="data", scale=2, max_size="50Gi", dry_run=True))
    assert rv(fake, "PersistentVolumeClaim", "shop", "data") == before


# --- jobs -----------------------------------------------------------------------------------------


def test_job_from_cronjob_once_per_incident(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(objects.cronjob("shop", "nightly-report"))
    action = act("job_from_cronjob", namespace="shop", cronjob="nightly-report")
    run(
        kube,
        action,
        incident="inc-1",
    )
    name = job_name("nightly-report", "inc-1")
    job = fake.get("Job", "shop", name)
    cron = fake.get("CronJob", "shop", "nightly-report")
    assert job is not None and cron is not None
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job["metadata"]["annotations"]["team"] == "data", "the template's annotations are kept"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "CronJob",
        "nightly-report",
        cron["metadata"]["uid"],
        True,
    )
    assert job["spec"]["template"] == cron["spec"]["jobTemplate"]["spec"]["template"]
    assert "already created" in run(kube, action, incident="inc-1")
    assert sum(1 for c in fake.requests if c.verb == "create" and c.resource == "jobs") == 2
    assert len([k for k in fake.objects if k[1] == "jobs"]) == 1
    run(
        kube,
        act("job_from_cronjob", namespace="shop", cronjob="nightly-report", dry_run=True),
        incident="inc-2",
    )
    assert fake.get("Job", "shop", job_name("nightly-report", "inc-2")) is None


def test_job_names_fit_and_differ_per_incident() -> None:
    long = "a" * 52
    assert len(job_name(long, "inc-1")) <= 63
    assert job_name("x", "inc-1") != job_name("x", "inc-2")
    assert job_name("x", "inc-1") == job_name("x", "inc-1")


def test_delete_failed_job_only_when_failed(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(objects.job("shop", "broken", failed=True), objects.job("shop", "fine", failed=False))
    assert "deleted" in run(kube, act("delete_failed_job", namespace="shop", name="broken"))
    assert fake.deletions == [("jobs", "broken", "Background")]
    assert "already gone" in run(kube, act("delete_failed_job", namespace="shop", name="broken"))
    with pytest.raises(KubeError, match="has not failed") as err:
        run(kube, act("delete_failed_job", namespace="shop", name="fine"))
    assert not err.value.retryable and fake.get("Job", "shop", "fine") is not None


# --- guardrails shared by all verbs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        act("rollout_restart", workload="Deployment", namespace="kube-system", name="coredns"),
        act("delete_pod", namespace="kube-system", name="x"),
        act("resize_pvc", namespace="other", name="data", scale=2, max_size="1Ti"),
        act("job_from_cronjob", namespace="other", cronjob="c"),
    ],
)
def test_a_namespace_outside_the_allow_list_is_refused_before_any_request(
    fake: KubeFake, kube: KubeActions, action: KubeAction
) -> None:
    with pytest.raises(KubeError, match=r"is not in kube\.namespaces") as err:
        run(kube, action)
    assert not err.value.retryable and fake.requests == []


def test_in_flight_budget_per_namespace(fake: KubeFake, tmp_path: Path) -> None:
    kube = actions_for(fake, tmp_path, max_in_flight={"cluster": 5, "namespace": 1})
    run(kube, act("rollout_restart", workload="Deployment", namespace="shop", name="cart"), incident="inc-1")
    with pytest.raises(KubeError, match="already in flight in namespace shop") as err:
        run(
            kube,
            act("rollout_restart", workload="StatefulSet", namespace="shop", name="db"),
            incident="inc-2",
        )
    assert err.value.retryable, "the budget frees up: Temporal retries"
    assert fake.get("Lease", "selfheal", "selfheal-inflight-cluster-1") is None, (
        "its cluster slot was given back"
    )
    # The same incident's next disruptive verb finds its own slot.
    run(kube, act("rollout_restart", workload="StatefulSet", namespace="shop", name="db"), incident="inc-1")
    # A finished rollout frees the incident's slots.
    fake.complete_rollout("StatefulSet", "shop", "db")
    waited = kube.wait(
        KubeWaitAction(workload="StatefulSet", namespace="shop", name="db", timeout_seconds=5),
        incident_id="inc-1",
    )
    assert waited.done
    run(kube, act("rollout_restart", workload="StatefulSet", namespace="shop", name="db"), incident="inc-2")


def test_in_flight_budget_per_cluster_and_expiry(fake: KubeFake, tmp_path: Path) -> None:
    clock = [datetime(2025, 6, 1, tzinfo=UTC)]
    fake.add(objects.deployment("other", "web"))
    settings = {
        "max_in_flight": {"cluster": 1, "namespace": 1},
        "namespaces": ["shop", "other"],
        "in_flight_seconds": 600,
    }
    kube = actions_for(fake, tmp_path, **settings)
    kube.budget.now = lambda: clock[0]
    run(kube, act("rollout_restart", workload="Deployment", namespace="shop", name="cart"), incident="inc-1")
    with pytest.raises(KubeError, match="in flight in the cluster"):
        run(
            kube,
            act("rollout_restart", workload="Deployment", namespace="other", name="web"),
            incident="inc-2",
        )
    clock[0] += timedelta(seconds=601)  # inc-1's worker died: its slot expires
    run(kube, act("rollout_restart", workload="Deployment", namespace="other", name="web"), incident="inc-2")
    lease = fake.get("Lease", "selfheal", "selfheal-inflight-cluster-0")
    assert lease is not None and lease["spec"]["holderIdentity"] == "inc-2"


# --- RBAC: the verb table is what the verbs do ----------------------------------------------------


def test_each_verb_makes_only_the_calls_its_rules_list(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(
        cart_pod(),
        cart_pod("cart-5d4f-two"),
        cart_pod("cart-5d4f-on-node", node="node-2"),
        objects.pvc("shop", "data"),
        objects.cronjob("shop", "nightly"),
        objects.job("shop", "broken", failed=True),
        objects.node("node-3"),
    )
    actions = [
        act("rollout_restart", workload="Deployment", namespace="shop", name="cart"),
        act("scale", workload="Deployment", namespace="shop", name="cart", replicas=2, max_replicas=5),
        act("delete_pod", namespace="shop", name="cart-5d4f-abcde"),
        act("evict_pod", namespace="shop", name="cart-5d4f-two"),
        act("cordon", node="node-1"),
        act("uncordon", node="node-1"),
        act("drain", node="node-2"),
        act("resize_pvc", namespace="shop", name="data", scale=2, max_size="50Gi"),
        act("job_from_cronjob", namespace="shop", cronjob="nightly"),
        act("delete_failed_job", namespace="shop", name="broken"),
    ]
    assert {a.verb for a in actions} == set(VERB_RULES)
    for action in actions:
        fake.requests.clear()
        run(kube, action)
        made = {(c.group, c.resource, c.verb) for c in fake.requests}
        assert made <= VERB_RULES[action.verb] | BUDGET_RULES, (action.verb, made - VERB_RULES[action.verb])


def test_events_in_both_recorded_shapes_newest_first(fake: KubeFake, kube: KubeActions) -> None:
    """A scheduler event recorded through events.k8s.io/v1 has no `lastTimestamp` or `count`, only
    `eventTime` and `series`: it is ordered by its last occurrence and counted as kubectl does."""
    pod = "cart-5d4f-abcde"
    fake.add(
        objects.event("shop", "Pod", pod, "BackOff", "Back-off restarting failed container", count=3),
        objects.series_event(
            "shop", "Pod", pod, "FailedScheduling", "0/3 nodes are available: 3 Insufficient cpu.", count=7
        ),
        objects.event(
            "shop",
            "Pod",
            pod,
            "Pulled",
            "Container image already present",
            type_="Normal",
            last="2025-01-01T00:00:30Z",
        ),
        objects.event("shop", "Deployment", pod, "ScalingReplicaSet", "not the pod's", type_="Normal"),
    )
    assert kube.events("Pod", "shop", pod) == [
        "Warning FailedScheduling (x7): 0/3 nodes are available: 3 Insufficient cpu.",  # last seen 00:20
        "Warning BackOff (x3): Back-off restarting failed container",  # 00:10
        "Normal Pulled: Container image already present",  # 00:00:30
    ]


def test_node_events_are_read_in_default(fake: KubeFake, kube: KubeActions) -> None:
    fake.add(
        objects.event("default", "Node", "node-1", "NodeNotReady", "Node node-1 status is now: NodeNotReady")
    )
    assert kube.events("Node", "", "node-1") == [
        "Warning NodeNotReady: Node node-1 status is now: NodeNotReady"
    ]
    assert [(c.resource, c.verb, c.namespace) for c in fake.calls()] == [("events", "list", "default")]


def test_the_api_server_rejects_an_unknown_field_selector(fake: KubeFake, kube: KubeActions) -> None:
    with pytest.raises(KubeError) as err:
        kube.api.call(
            "list", kube.api.core.list_namespaced_event, "shop", field_selector="involvedObject.color=red"
        )
    assert err.value.status == 400 and "field label not supported: involvedObject.color" in str(err.value)
    listed = kube.api.call(
        "list", kube.api.core.list_namespaced_pod, "shop", field_selector="status.phase!=Running"
    )
    assert listed["items"] == []  # `!=` is a selector the API server accepts
