"""`kubectl rollout status`, decided the same way (kubectl's `polymorphichelpers/rollout_status.go`).

Pure: one workload object in, `(done, message)` out; a rollout that can never finish (progress
deadline exceeded, a strategy without rollout status) raises `RolloutFailed` so the wait fails fast.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


class RolloutFailed(Exception):
    """The rollout will not complete by waiting longer."""


def _int(obj: Obj, *path: str) -> int:
    for key in path:
        obj = obj.get(key) or {}
    return obj if isinstance(obj, int) and not isinstance(obj, bool) else 0


def rollout_status(kind: str, obj: Obj) -> tuple[bool, str]:
    name = obj.get("metadata", {}).get("name", "")
    if kind == "Deployment":
        return _deployment(name, obj)
    if kind == "DaemonSet":
        return _daemonset(name, obj)
    if kind == "StatefulSet":
        return _statefulset(name, obj)
    raise RolloutFailed(f"no rollout status for kind {kind}")


def _observed(obj: Obj) -> bool:
    return _int(obj, "metadata", "generation") <= _int(obj, "status", "observedGeneration")


def _deployment(name: str, d: Obj) -> tuple[bool, str]:
    if not _observed(d):
        return False, "waiting for deployment spec update to be observed"
    status = d.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutFailed(
                f"deployment {name!r} exceeded its progress deadline: {cond.get('message', '')}"
            )
    spec_replicas = (d.get("spec") or {}).get("replicas")
    updated = _int(status, "updatedReplicas")
    if isinstance(spec_replicas, int) and updated < spec_replicas:
        return False, f"{updated} out of {spec_replicas} new replicas have been updated"
    replicas = _int(status, "replicas")
    if replicas > updated:
        return False, f"{replicas - updated} old replicas are pending termination"
    available = _int(status, "availableReplicas")
    if available < updated:
        return False, f"{available} of {updated} updated replicas are available"
    return True, f"deployment {name!r} successfully rolled out"


def _daemonset(name: str, ds: Obj) -> tuple[bool, str]:
    strategy = ((ds.get("spec") or {}).get("updateStrategy") or {}).get("type", "RollingUpdate")
    if strategy != "RollingUpdate":
        raise RolloutFailed(f"rollout status is only available for the RollingUpdate strategy ({strategy})")
    if not _observed(ds):
        return False, "waiting for daemon set spec update to be observed"
    status = ds.get("status") or {}
    desired = _int(status, "desiredNumberScheduled")
    updated = _int(status, "updatedNumberScheduled")
    if updated < desired:
        return False, f"{updated} out of {desired} new pods have been updated"
    available = _int(status, "numberAvailable")
    if available < desired:
        return False, f"{available} of {desired} updated pods are available"
    return True, f"daemon set {name!r} successfully rolled out"


def _statefulset(name: str, sts: Obj) -> tuple[bool, str]:
    spec = sts.get("spec") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise RolloutFailed(
            f"rollout status is only available for the RollingUpdate strategy ({strategy['type']})"
        )
    status = sts.get("status") or {}
    observed = _int(status, "observedGeneration")
    if observed == 0 or _int(sts, "metadata", "generation") > observed:
        return False, "waiting for statefulset spec update to be observed"
    replicas = spec.get("replicas")
    ready = _int(status, "readyReplicas")
    if isinstance(replicas, int) and ready < replicas:
        return False, f"waiting for {replicas - ready} pods to be ready"
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        partition = rolling.get("partition")
        updated = _int(status, "updatedReplicas")
        if isinstance(replicas, int) and isinstance(partition, int) and updated < replicas - partition:
            return (
                False,
                f"partitioned roll out: {updated} out of {replicas - partition} new pods have been updated",
            )
        return True, f"partitioned roll out complete: {updated} new pods have been updated"
    if status.get("updateRevision") != status.get("currentRevision"):
        return (
            False,
            f"waiting for {_int(status, 'updatedReplicas')} pods at revision {status.get('updateRevision')}",
        )
    return True, f"statefulset rolling update complete at revision {status.get('currentRevision')}"
