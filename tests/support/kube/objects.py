"""Objects shaped as the API server returns them (defaults filled in), to seed the fake with."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def _meta(namespace: str | None, name: str, **extra: Any) -> Obj:
    meta: Obj = {"name": name, **extra}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def _template(app: str) -> Obj:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": app, "image": f"registry.example/{app}:1.0"}]},
    }


def deployment(namespace: str, name: str, replicas: int = 3, *, ready: int | None = None) -> Obj:
    """A Deployment whose rollout is complete (`ready` replicas available, default all)."""
    ready = replicas if ready is None else ready
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(namespace, name, generation=1),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": _template(name),
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
            },
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        },
    }


def replicaset(
    namespace: str, name: str, deployment: str, replicas: int = 3, *, ready: int | None = None
) -> Obj:
    ready = replicas if ready is None else ready
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": _meta(
            namespace,
            name,
            generation=1,
            ownerReferences=[
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": deployment,
                    "uid": "",
                    "controller": True,
                }
            ],
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": deployment}},
            "template": _template(deployment),
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def statefulset(namespace: str, name: str, replicas: int = 3, *, ready: int | None = None) -> Obj:
    ready = replicas if ready is None else ready
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(namespace, name, generation=1),
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": _template(name),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": ready,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "currentRevision": f"{name}-1",
            "updateRevision": f"{name}-1",
        },
    }


def daemonset(namespace: str, name: str, nodes: int = 3) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _meta(namespace, name, generation=1),
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": _template(name),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        },
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": nodes,
            "currentNumberScheduled": nodes,
            "updatedNumberScheduled": nodes,
            "numberReady": nodes,
            "numberAvailable": nodes,
        },
    }


def pod(
    namespace: str,
    name: str,
    *,
    owner: tuple[str, str] | None = None,
    node: str = "node-1",
    ready: bool = True,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    created: str = "2025-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
    empty_dir: bool = False,
) -> Obj:
    """A pod; `owner` is its controller as (kind, name), e.g. ("ReplicaSet", "cart-5d4f")."""
    meta = _meta(namespace, name, labels=labels or {}, creationTimestamp=created)
    if annotations:
        meta["annotations"] = annotations
    if owner is not None:
        api = "apps/v1" if owner[0] in ("ReplicaSet", "StatefulSet", "DaemonSet") else "batch/v1"
        meta["ownerReferences"] = [
            {
                "apiVersion": api,
                "kind": owner[0],
                "name": owner[1],
                "uid": "",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    spec: Obj = {"nodeName": node, "containers": [{"name": "main", "image": "registry.example/app:1.0"}]}
    if empty_dir:
        spec["volumes"] = [{"name": "scratch", "emptyDir": {}}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": spec,
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def node(name: str, *, ready: bool = True, unschedulable: bool = False) -> Obj:
    spec: Obj = {"unschedulable": True} if unschedulable else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(None, name, labels={"kubernetes.io/hostname": name}),
        "spec": spec,
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def storageclass(name: str, *, expandable: bool) -> Obj:
    sc: Obj = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": _meta(None, name),
        "provisioner": "ebs.csi.aws.com",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    if expandable:
        sc["allowVolumeExpansion"] = True
    return sc


def pvc(namespace: str, name: str, *, size: str = "10Gi", storage_class: str | None = "standard") -> Obj:
    spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
        "volumeName": f"pv-{name}",
    }
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(namespace, name),
        "spec": spec,
        "status": {"phase": "Bound", "capacity": {"storage": size}},
    }


def cronjob(namespace: str, name: str) -> Obj:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(namespace, name, generation=1),
        "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {
                "metadata": {"labels": {"app": name}, "annotations": {"team": "data"}},
                "spec": {
                    "backoffLimit": 2,
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": name, "image": f"registry.example/{name}:1.0"}],
                        },
                    },
                },
            },
        },
    }


def job(namespace: str, name: str, *, failed: bool) -> Obj:
    cond = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    done = {"type": "Complete", "status": "True"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(namespace, name, generation=1),
        "spec": {
            "backoffLimit": 2,
            "template": {
                "metadata": {},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "registry.example/job:1.0"}],
                },
            },
        },
        "status": {"conditions": [cond if failed else done], "failed": 3 if failed else 0},
    }


def pdb(namespace: str, name: str, app: str, *, allowed: int) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(namespace, name, generation=1),
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": app}}},
        "status": {
            "observedGeneration": 1,
            "disruptionsAllowed": allowed,
            "currentHealthy": 2 + allowed,
            "desiredHealthy": 2,
            "expectedPods": 2 + allowed,
        },
    }


#: The apiVersion an Event's `involvedObject` names for each kind.
_API_VERSIONS = {
    "Deployment": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "ReplicaSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
}


def _involved(namespace: str, kind: str, name: str) -> Obj:
    ref: Obj = {"kind": kind, "name": name, "apiVersion": _API_VERSIONS.get(kind, "v1")}
    if kind != "Node":  # a Node's events live in `default`, about an object with no namespace
        ref["namespace"] = namespace
    ref["uid"] = name if kind == "Node" else f"uid-{name}"
    return ref


def event(
    namespace: str,
    kind: str,
    name: str,
    reason: str,
    message: str,
    *,
    type_: str = "Warning",
    count: int = 1,
    last: str = "2025-01-01T00:10:00Z",
) -> Obj:
    """A core/v1 Event about an object as the kubelet or a controller records it through the
    core/v1 API (client-go tools/record): `count`, `firstTimestamp`/`lastTimestamp`, `source`,
    `eventTime` null (k8s.io/api core/v1 types.go `Event`)."""
    component = "kubelet" if kind in ("Pod", "Node") else f"{kind.lower()}-controller"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _meta(
            namespace, f"{name}.{abs(hash((reason, message, last))) % 10**12:x}", creationTimestamp=last
        ),
        "involvedObject": _involved(namespace, kind, name),
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": "2025-01-01T00:00:00Z",
        "lastTimestamp": last,
        "eventTime": None,
        "source": {"component": component, **({"host": "node-1"} if kind == "Pod" else {})},
        "reportingComponent": "",
        "reportingInstance": "",
    }


def series_event(
    namespace: str,
    kind: str,
    name: str,
    reason: str,
    message: str,
    *,
    count: int,
    first: str = "2025-01-01T00:00:00.000000Z",
    last: str = "2025-01-01T00:20:00.000000Z",
    component: str = "default-scheduler",
) -> Obj:
    """An Event recorded through events.k8s.io/v1 (client-go tools/events, which the scheduler
    uses for FailedScheduling) as a core/v1 read shows it: `eventTime` (a MicroTime) and
    `series` ({count, lastObservedTime}) set, `count` absent and `firstTimestamp`/`lastTimestamp`
    null (the conversion of `deprecatedCount`/`deprecatedLastTimestamp`, left zero), `source`
    empty and the reporter in `reportingComponent`/`reportingInstance`."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _meta(
            namespace, f"{name}.{abs(hash((reason, message))) % 10**12:x}", creationTimestamp=first[:19] + "Z"
        ),
        "involvedObject": _involved(namespace, kind, name),
        "reason": reason,
        "message": message,
        "type": "Warning",
        "firstTimestamp": None,
        "lastTimestamp": None,
        "eventTime": first,
        "series": {"count": count, "lastObservedTime": last},
        "source": {},
        "action": "Scheduling",
        "reportingComponent": component,
        "reportingInstance": f"{component}-control-plane",
    }


def kustomization(namespace: str, name: str, *, applied: str = "") -> Obj:
    """A Flux Kustomization (`kustomize.toolkit.fluxcd.io/v1`, kustomize-controller api/v1
    kustomization_types.go) that last applied `applied` (`main@sha1:<sha>`)."""
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": _meta(namespace, name, generation=1),
        "spec": {
            "interval": "10m",
            "path": "./",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": name},
        },
        "status": {
            "observedGeneration": 1,
            "lastAppliedRevision": applied,
            "lastAttemptedRevision": applied,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "ReconciliationSucceeded",
                    "message": f"Applied revision: {applied}",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
        },
    }


def helm_release(namespace: str, name: str, *, chart_version: str = "0.1.0") -> Obj:
    """A Flux HelmRelease (`helm.toolkit.fluxcd.io/v2`, helm-controller api/v2
    helmrelease_types.go) with one deployed release of `chart_version` from a chart built from a
    GitRepository (`0.1.0+<12 hex of the commit>` with `reconcileStrategy: Revision`). v2 has no
    `lastAppliedRevision`: what runs is in `status.history`."""
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": _meta(namespace, name, generation=1),
        "spec": {
            "interval": "10m",
            "chart": {
                "spec": {
                    "chart": f"./charts/{name}",
                    "reconcileStrategy": "Revision",
                    "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                }
            },
        },
        "status": {
            "observedGeneration": 1,
            "helmChart": f"{namespace}/{namespace}-{name}",
            "lastAttemptedRevision": chart_version,
            "lastAttemptedReleaseAction": "install",
            "history": [
                {
                    "name": name,
                    "namespace": namespace,
                    "version": 1,
                    "status": "deployed",
                    "chartName": name,
                    "chartVersion": chart_version,
                    "appVersion": "1.0.0",
                    "configDigest": "sha256:" + "0" * 64,
                    "digest": "sha256:" + "1" * 64,
                    "firstDeployed": "2025-01-01T00:00:00Z",
                    "lastDeployed": "2025-01-01T00:00:00Z",
                }
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "InstallSucceeded",
                    "message": f"Helm install succeeded for release {namespace}/{name}.v1 with chart"
                    f" {name}@{chart_version}",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
        },
    }
