"""`kube_wait`: kubectl's rollout-status rules, and the wait loop against the API test server, whose
controller state the test advances (no sleeping for a rollout)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.kube.api import KubeError
from connectors.kube.rollout import RolloutFailed, rollout_status
from models.plan import KubeAction, KubeWaitAction
from tests.support.kube import KubeFake, actions_for, objects

pytestmark = pytest.mark.timeout(30)


def with_status(obj: dict[str, Any], generation: int = 1, **status: Any) -> dict[str, Any]:
    obj["metadata"]["generation"] = generation
    obj["status"] = status
    return obj


@pytest.mark.parametrize(
    "status,generation,done,message",
    [
        ({"observedGeneration": 1}, 2, False, "spec update to be observed"),
        ({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3}, 2, False, "1 out of 3 new replicas"),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4},
            2,
            False,
            "1 old replicas are pending",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2},
            2,
            False,
            "2 of 3 updated replicas are available",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3},
            2,
            True,
            "successfully rolled out",
        ),
    ],
)
def test_deployment_status_follows_kubectl(
    status: dict[str, Any], generation: int, done: bool, message: str
) -> None:
    got_done, got = rollout_status(
        "Deployment", with_status(objects.deployment("shop", "cart"), generation, **status)
    )
    assert got_done is done and message in got


def test_progress_deadline_fails_fast_once_observed() -> None:
    stuck = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    dep = with_status(objects.deployment("shop", "cart"), 2, observedGeneration=2, conditions=[stuck])
    with pytest.raises(RolloutFailed, match="exceeded its progress deadline"):
        rollout_status("Deployment", dep)
    # Not observed yet: the condition belongs to the previous generation.
    dep["metadata"]["generation"] = 3
    assert rollout_status("Deployment", dep) == (False, "waiting for deployment spec update to be observed")


def test_statefulset_and_daemonset_rules() -> None:
    sts = objects.statefulset("shop", "db")
    sts["status"].update(readyReplicas=2)
    assert rollout_status("StatefulSet", sts) == (False, "waiting for 1 pods to be ready")
    sts["status"].update(readyReplicas=3, updatedReplicas=1)
    sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = 1
    assert not rollout_status("StatefulSet", sts)[0], "1 of 2 pods above the partition updated"
    sts["status"]["observedGeneration"] = 0
    assert rollout_status("StatefulSet", sts)[1] == "waiting for statefulset spec update to be observed"
    sts = objects.statefulset("shop", "db")
    del sts["spec"]["updateStrategy"]["rollingUpdate"]
    sts["status"]["updateRevision"] = "db-2"
    assert not rollout_status("StatefulSet", sts)[0]
    sts["spec"]["updateStrategy"] = {"type": "OnDelete"}
    with pytest.raises(RolloutFailed, match="only available for the RollingUpdate strategy"):
        rollout_status("StatefulSet", sts)
    ds = objects.daemonset("shop", "agent")
    ds["status"].update(numberAvailable=2)
    assert rollout_status("DaemonSet", ds) == (False, "2 of 3 updated pods are available")


@pytest.fixture
def fake() -> Iterator[KubeFake]:
    with KubeFake() as server:
        server.add(objects.deployment("shop", "cart"), objects.statefulset("shop", "db"))
        yield server


def wait(
    fake: KubeFake, tmp_path: Path, kind: str = "Deployment", name: str = "cart", timeout: float = 10
) -> Any:
    kube = actions_for(fake, tmp_path)
    return kube.wait(
        KubeWaitAction(workload=kind, namespace="shop", name=name, timeout_seconds=timeout), incident_id="i"
    )


def restart(fake: KubeFake, tmp_path: Path, kind: str = "Deployment", name: str = "cart") -> None:
    action = KubeAction(verb="rollout_restart", workload=kind, namespace="shop", name=name)
    actions_for(fake, tmp_path).run(action, incident_id="i", since=datetime(2025, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("kind,name", [("Deployment", "cart"), ("StatefulSet", "db")])
def test_wait_returns_once_the_controller_has_rolled_out(
    fake: KubeFake, tmp_path: Path, kind: str, name: str
) -> None:
    restart(fake, tmp_path, kind, name)
    fake.rollouts_complete_after = 3  # the controller finishes after the third read
    result = wait(fake, tmp_path, kind, name)
    assert result.done, result.detail
    reads = [c for c in fake.requests if c.verb == "get" and c.name == name]
    assert len(reads) >= 3


def test_wait_fails_fast_on_progress_deadline(fake: KubeFake, tmp_path: Path) -> None:
    restart(fake, tmp_path)
    fake.stall_rollout("shop", "cart")
    result = wait(fake, tmp_path, timeout=600)
    assert not result.done and "exceeded its progress deadline" in result.detail


def test_wait_times_out_with_the_last_status(fake: KubeFake, tmp_path: Path) -> None:
    restart(fake, tmp_path)
    kube = actions_for(fake, tmp_path)
    ticks = iter(range(0, 1000, 5))
    kube.monotonic = lambda: float(next(ticks))
    kube.sleep = lambda seconds: None
    action = KubeWaitAction(workload="Deployment", namespace="shop", name="cart", timeout_seconds=12)
    result = kube.wait(action, incident_id="i")
    assert not result.done
    assert (
        "did not finish rolling out in time: waiting for deployment spec update to be observed"
        in result.detail
    )


def test_wait_on_a_missing_workload_or_namespace(fake: KubeFake, tmp_path: Path) -> None:
    with pytest.raises(KubeError, match="deployment shop/nope not found") as err:
        wait(fake, tmp_path, name="nope")
    assert not err.value.retryable
    kube = actions_for(fake, tmp_path)
    with pytest.raises(KubeError, match="not in kube"):
        kube.wait(KubeWaitAction(workload="Deployment", namespace="prod", name="cart"), incident_id="i")
