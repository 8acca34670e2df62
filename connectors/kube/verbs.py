"""The closed list of kube verbs, what each may touch (`VERB_RULES`, from which the shipped RBAC is
checked), and `KubeActions`, which runs them with their guardrails.

Every verb reads remote state before writing, so a retried activity finds its own work done:
a marker annotation naming the incident (restart, resize), an absolute target (scale, cordon),
a deterministic name (job from cronjob), or a pod already replaced since the alert started.
A 404 on delete means done. `dry_run` sends each write with `dryRun=All`: the API server admits
and validates it, persists nothing, and guardrails are still checked.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.kube.api import DRY_RUN_ALL, KubeApi, KubeError, Obj, refused
from connectors.kube.budget import Budget
from connectors.kube.quantity import format_bytes, grown, to_bytes
from connectors.kube.rollout import RolloutFailed, rollout_status
from connectors.kube.settings import KubeSettings
from models.plan import KUBE_VERBS, KubeAction, KubeWaitAction

#: (apiGroup, resource, verb) as RBAC names them.
Rule = tuple[str, str, str]

_WORKLOADS = ("deployments", "statefulsets", "daemonsets")
_OWNERS: frozenset[Rule] = frozenset(
    {("apps", "replicasets", "get"), ("apps", "statefulsets", "get"), ("apps", "daemonsets", "get")}
)
#: What each verb reads and writes: exactly the calls it makes (tests/connectors/kube checks the
#: calls against this table, tests/deploy the shipped ClusterRoles against it).
VERB_RULES: dict[str, frozenset[Rule]] = {
    "rollout_restart": frozenset({("apps", r, v) for r in _WORKLOADS for v in ("get", "patch")}),
    "scale": frozenset(
        {("apps", f"{r}/scale", v) for r in ("deployments", "statefulsets") for v in ("get", "patch")}
    ),
    "delete_pod": frozenset({("", "pods", "get"), ("", "pods", "delete")}) | _OWNERS,
    "evict_pod": frozenset({("", "pods", "get"), ("", "pods/eviction", "create")}) | _OWNERS,
    "cordon": frozenset({("", "nodes", "get"), ("", "nodes", "patch")}),
    "uncordon": frozenset({("", "nodes", "get"), ("", "nodes", "patch")}),
    "drain": frozenset(
        {
            ("", "nodes", "get"),
            ("", "nodes", "list"),
            ("", "nodes", "patch"),
            ("", "pods", "list"),
            ("", "pods/eviction", "create"),
        }
    ),
    "resize_pvc": frozenset(
        {
            ("", "persistentvolumeclaims", "get"),
            ("", "persistentvolumeclaims", "patch"),
            ("storage.k8s.io", "storageclasses", "get"),
        }
    ),
    "job_from_cronjob": frozenset({("batch", "cronjobs", "get"), ("batch", "jobs", "create")}),
    "delete_failed_job": frozenset({("batch", "jobs", "get"), ("batch", "jobs", "delete")}),
}
assert set(VERB_RULES) == set(KUBE_VERBS)
#: `kube_wait` reads workloads; the blast-radius budget keeps its slots in Leases.
WAIT_RULES: frozenset[Rule] = frozenset({("apps", r, "get") for r in _WORKLOADS})
BUDGET_RULES: frozenset[Rule] = frozenset(
    {("coordination.k8s.io", "leases", v) for v in ("get", "create", "update", "delete")}
)
#: Diagnostics read the recent events of the object an alert names (Node events live in `default`).
EVENT_RULES: frozenset[Rule] = frozenset({("", "events", "list")})
#: Verbs that take pods away (held to the in-flight budget and the floors). `scale` only when down.
DISRUPTIVE = frozenset({"rollout_restart", "scale", "delete_pod", "evict_pod", "drain"})
#: Resources outside any namespace, or read across all of them (drain): a ClusterRole grants them.
CLUSTER_WIDE: frozenset[Rule] = (
    VERB_RULES["drain"] | VERB_RULES["cordon"] | {("storage.k8s.io", "storageclasses", "get")} | EVENT_RULES
)


def all_rules() -> frozenset[Rule]:
    return frozenset().union(*VERB_RULES.values(), WAIT_RULES, BUDGET_RULES, EVENT_RULES)


RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESTART_MARK = "selfheal.io/restarted-for"
RESIZE_MARK = "selfheal.io/resized-for"
INCIDENT_MARK = "selfheal.io/incident"
MIRROR_POD = "kubernetes.io/config.mirror"
SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class KubeResult:
    detail: str
    changed: bool = True


@dataclass(frozen=True)
class WaitResult:
    done: bool
    detail: str


def _meta(obj: Obj) -> Obj:
    meta: Obj = obj.get("metadata") or {}
    return meta


def _ready(obj: Obj) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _controller(pod: Obj) -> Obj | None:
    return next((o for o in _meta(pod).get("ownerReferences") or [] if o.get("controller")), None)


def _created(obj: Obj) -> datetime | None:
    stamp = _meta(obj).get("creationTimestamp")
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else None
    except ValueError:
        return None


_NEVER = datetime.min.replace(tzinfo=UTC)


def _event_time(event: Obj) -> datetime:
    """When an event last happened: `series.lastObservedTime`, else `lastTimestamp`, else
    `eventTime` (a MicroTime), else its creation."""
    series = event.get("series") if isinstance(event.get("series"), dict) else {}
    for stamp in (
        (series or {}).get("lastObservedTime"),
        event.get("lastTimestamp"),
        event.get("eventTime"),
        _meta(event).get("creationTimestamp"),
    ):
        try:
            when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else None
        except ValueError:
            when = None
        if when is not None:
            return when if when.tzinfo else when.replace(tzinfo=UTC)
    return _NEVER


def job_name(cronjob: str, incident_id: str) -> str:
    """The Job a CronJob is instantiated as for one incident: the same name on every retry, so a
    second create answers 409 AlreadyExists instead of starting a second run. At most 63 characters."""
    digest = hashlib.sha256(f"{cronjob}\0{incident_id}".encode()).hexdigest()[:10]
    return f"{cronjob[:52].rstrip('-.')}-{digest}"


class KubeActions:
    """Runs kube verbs and waits against one cluster, within the `kube:` settings' guardrails."""

    def __init__(
        self,
        api: KubeApi,
        settings: KubeSettings,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.settings = settings
        self.now = now
        self.sleep = sleep
        self.monotonic = monotonic
        self.budget = Budget(
            api,
            lease_namespace=settings.lease_namespace,
            per_cluster=settings.max_in_flight.cluster,
            per_namespace=settings.max_in_flight.namespace,
            hold_seconds=settings.in_flight_seconds,
            now=now,
        )

    # --- the entry points -------------------------------------------------------------------------

    def run(self, action: KubeAction, *, incident_id: str, since: datetime) -> KubeResult:
        """Run one verb. `since` (the alert's start) tells a pod already replaced from the one to remove."""
        if action.namespace is not None:
            self._allowed(action.namespace)
        verb = getattr(self, f"_{action.verb}")
        result: KubeResult = verb(action, incident_id, since)
        if action.dry_run:
            return KubeResult(f"(server-side dry run) {result.detail}", changed=False)
        return result

    def events(self, kind: str, namespace: str, name: str, *, limit: int = 10) -> list[str]:
        """The object's most recent events, newest first, one line each (`Warning BackOff (x12):
        Back-off restarting failed container`): what `kubectl describe` shows at its end.

        Events recorded through events.k8s.io/v1 (the scheduler's FailedScheduling, say) read as
        core/v1 with `eventTime` and `series` instead of `lastTimestamp` and `count`; they are
        ordered and counted as kubectl does (kubectl/pkg/util/event/sorted_event_list.go)."""
        if kind != "Node":
            self._allowed(namespace)
        where = namespace or "default"
        listed = self.api.call(
            f"list events of {kind} {where}/{name}",
            self.api.core.list_namespaced_event,
            where,
            field_selector=f"involvedObject.kind={kind},involvedObject.name={name}",
        )
        items = [i for i in listed.get("items") or [] if isinstance(i, dict)]
        lines = []
        for item in sorted(items, key=_event_time, reverse=True)[:limit]:
            series = item.get("series") if isinstance(item.get("series"), dict) else None
            count = (series or {}).get("count") or item.get("count") or 1
            times = f" (x{count})" if isinstance(count, int) and count > 1 else ""
            message = " ".join(str(item.get("message") or "").split())[:300]
            lines.append(f"{item.get('type', '')} {item.get('reason', '')}{times}: {message}".strip())
        return lines

    def wait(self, action: KubeWaitAction, *, incident_id: str) -> WaitResult:
        """Poll the workload until `kubectl rollout status` would say it is done, the rollout can no
        longer finish (progress deadline exceeded), or the timeout passes. A finished rollout frees
        the incident's in-flight slots."""
        self._allowed(action.namespace)
        what = f"{action.workload} {action.namespace}/{action.name}"
        deadline = self.monotonic() + action.timeout_seconds
        message = ""
        while True:
            obj = self._read_workload(action.workload, action.namespace, action.name)
            try:
                done, message = rollout_status(action.workload, obj)
            except RolloutFailed as exc:
                return WaitResult(False, f"{what}: {exc}")
            if done:
                self.budget.release(incident_id, action.namespace)
                return WaitResult(True, f"{what}: {message}")
            if self.monotonic() >= deadline:
                return WaitResult(False, f"{what} did not finish rolling out in time: {message}")
            self.sleep(min(self.settings.poll_seconds, max(0.0, deadline - self.monotonic())))

    # --- guardrails -------------------------------------------------------------------------------

    def _allowed(self, namespace: str) -> None:
        if namespace not in self.settings.namespaces:
            allowed = ", ".join(self.settings.namespaces) or "none"
            raise refused(f"namespace {namespace!r} is not in kube.namespaces (allowed: {allowed})")

    def _disrupt(self, action: KubeAction, incident_id: str, namespace: str | None) -> None:
        if not action.dry_run:
            self.budget.acquire(incident_id, namespace)

    def _pod_floor(self, pod: Obj) -> str:
        """Refuse when removing `pod` would leave its workload below `min_ready_fraction`; returns
        the owner's description."""
        ns, name = _meta(pod).get("namespace", ""), _meta(pod).get("name", "")
        owner = _controller(pod)
        if owner is None:
            raise refused(f"pod {ns}/{name} has no controller: nothing would replace it")
        kind = owner.get("kind")
        if kind == "ReplicaSet":
            rs = self._get(self.api.apps.read_namespaced_replica_set, "replicaset", ns, owner["name"])
            desired, ready = (
                (rs.get("spec") or {}).get("replicas", 0),
                (rs.get("status") or {}).get("readyReplicas", 0),
            )
        elif kind == "StatefulSet":
            sts = self._get(self.api.apps.read_namespaced_stateful_set, "statefulset", ns, owner["name"])
            desired, ready = (
                (sts.get("spec") or {}).get("replicas", 0),
                (sts.get("status") or {}).get("readyReplicas", 0),
            )
        elif kind == "DaemonSet":
            ds = self._get(self.api.apps.read_namespaced_daemon_set, "daemonset", ns, owner["name"])
            status = ds.get("status") or {}
            desired, ready = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
        else:
            raise refused(
                f"pod {ns}/{name} is owned by a {kind}; only ReplicaSet, StatefulSet and DaemonSet pods"
            )
        after = ready - (1 if _ready(pod) else 0)
        floor = math.ceil(self.settings.min_ready_fraction * desired)
        if after < floor:
            raise refused(
                f"pod {ns}/{name}: {kind} {owner['name']} would have {after} ready of {desired}"
                f" (floor {floor}, kube.min_ready_fraction {self.settings.min_ready_fraction:g})"
            )
        return f"{kind} {owner['name']}: {after} of {desired} ready after"

    # --- reads ------------------------------------------------------------------------------------

    def _get(self, method: Callable[..., Any], what: str, namespace: str | None, name: str) -> Obj:
        where = f"{namespace}/{name}" if namespace else name
        args = (name, namespace) if namespace else (name,)
        try:
            return self.api.call(f"get {what} {where}", method, *args)
        except KubeError as err:
            if err.status == 404:
                raise KubeError(
                    f"{what} {where} not found", retryable=False, status=404, reason="NotFound"
                ) from err
            raise

    def _maybe(self, method: Callable[..., Any], what: str, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            return self.api.call(f"get {what} {namespace}/{name}", method, name, namespace)
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def _read_workload(self, kind: str, ns: str, name: str) -> Obj:
        reads = {
            "Deployment": self.api.apps.read_namespaced_deployment,
            "StatefulSet": self.api.apps.read_namespaced_stateful_set,
            "DaemonSet": self.api.apps.read_namespaced_daemon_set,
        }
        return self._get(reads[kind], kind.lower(), ns, name)

    @staticmethod
    def _dry(action: KubeAction) -> dict[str, str]:
        return {"dry_run": DRY_RUN_ALL} if action.dry_run else {}

    # --- the verbs --------------------------------------------------------------------------------

    def _rollout_restart(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        assert a.workload and a.namespace and a.name
        what = f"{a.workload} {a.namespace}/{a.name}"
        obj = self._read_workload(a.workload, a.namespace, a.name)
        if (_meta(obj).get("annotations") or {}).get(RESTART_MARK) == incident_id:
            return KubeResult(f"{what} already restarted for this incident", changed=False)
        self._disrupt(a, incident_id, a.namespace)
        stamp = self.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {
                "resourceVersion": _meta(obj).get("resourceVersion"),
                "annotations": {RESTART_MARK: incident_id},
            },
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}},
        }
        patch = {
            "Deployment": self.api.apps.patch_namespaced_deployment,
            "StatefulSet": self.api.apps.patch_namespaced_stateful_set,
            "DaemonSet": self.api.apps.patch_namespaced_daemon_set,
        }[a.workload]
        self.api.call(f"restart {what}", patch, a.name, a.namespace, body, _content_type=SMP, **self._dry(a))
        return KubeResult(f"{what}: rollout restarted ({RESTARTED_AT}={stamp})")

    def _scale(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        assert a.workload and a.namespace and a.name and a.replicas is not None and a.max_replicas
        what = f"{a.workload} {a.namespace}/{a.name}"
        read, patch = {
            "Deployment": (
                self.api.apps.read_namespaced_deployment_scale,
                self.api.apps.patch_namespaced_deployment_scale,
            ),
            "StatefulSet": (
                self.api.apps.read_namespaced_stateful_set_scale,
                self.api.apps.patch_namespaced_stateful_set_scale,
            ),
        }[a.workload]
        scale = self._get(read, f"{a.workload.lower()} scale", a.namespace, a.name)
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        cap = min(a.max_replicas, self.settings.max_replicas)
        if a.replicas > cap:
            raise refused(
                f"{what}: {a.replicas} replicas is above the cap {cap} (max_replicas, kube.max_replicas)"
            )
        if a.replicas < self.settings.min_replicas:
            raise refused(
                f"{what}: {a.replicas} replicas is below kube.min_replicas ({self.settings.min_replicas})"
            )
        if a.replicas == current:
            return KubeResult(f"{what} already has {current} replicas", changed=False)
        if a.replicas < current:
            floor = math.ceil(self.settings.min_ready_fraction * current)
            if a.replicas < floor:
                raise refused(
                    f"{what}: scaling {current} → {a.replicas} goes below the floor {floor}"
                    f" (kube.min_ready_fraction {self.settings.min_ready_fraction:g})"
                )
            self._disrupt(a, incident_id, a.namespace)
        body = {
            "metadata": {"resourceVersion": _meta(scale).get("resourceVersion")},
            "spec": {"replicas": a.replicas},
        }
        self.api.call(f"scale {what}", patch, a.name, a.namespace, body, _content_type=MERGE, **self._dry(a))
        return KubeResult(f"{what}: replicas {current} → {a.replicas}")

    def _pod_to_remove(self, a: KubeAction, since: datetime) -> tuple[Obj | None, str]:
        assert a.namespace and a.name
        pod = self._maybe(self.api.core.read_namespaced_pod, "pod", a.namespace, a.name)
        what = f"pod {a.namespace}/{a.name}"
        if pod is None:
            return None, f"{what} is already gone"
        created = _created(pod)
        if created is not None and created > since:
            return None, f"{what} was created after the alert started: already replaced, left alone"
        if _meta(pod).get("deletionTimestamp"):
            return None, f"{what} is already terminating"
        return pod, what

    def _delete_pod(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        pod, what = self._pod_to_remove(a, since)
        if pod is None:
            return KubeResult(what, changed=False)
        owner = self._pod_floor(pod)
        self._disrupt(a, incident_id, a.namespace)
        try:
            self.api.call(
                f"delete {what}", self.api.core.delete_namespaced_pod, a.name, a.namespace, **self._dry(a)
            )
        except KubeError as err:
            if err.status == 404:
                return KubeResult(f"{what} is already gone", changed=False)
            raise
        return KubeResult(f"{what} deleted ({owner})")

    def _evict(self, namespace: str, name: str, dry_run: bool) -> None:
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
        }
        extra = {"dry_run": DRY_RUN_ALL} if dry_run else {}
        try:
            self.api.call(
                f"evict pod {namespace}/{name}",
                self.api.core.create_namespaced_pod_eviction,
                name,
                namespace,
                body,
                **extra,
            )
        except KubeError as err:
            if err.status == 429:
                why = "; ".join(err.causes) or "it allows no disruption now"
                raise KubeError(
                    f"eviction of pod {namespace}/{name} blocked by its PodDisruptionBudget (429: {why});"
                    " retryable once the budget allows a disruption",
                    retryable=True,
                    status=429,
                    reason="DisruptionBudget",
                ) from err
            raise

    def _evict_pod(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        pod, what = self._pod_to_remove(a, since)
        if pod is None:
            return KubeResult(what, changed=False)
        assert a.namespace and a.name
        owner = self._pod_floor(pod)
        self._disrupt(a, incident_id, a.namespace)
        try:
            self._evict(a.namespace, a.name, a.dry_run)
        except KubeError as err:
            if err.status == 404:
                return KubeResult(f"{what} is already gone", changed=False)
            raise
        return KubeResult(f"{what} evicted ({owner})")

    def _set_unschedulable(self, a: KubeAction, value: bool) -> KubeResult:
        assert a.node
        node = self._get(self.api.core.read_node, "node", None, a.node)
        verb = "cordoned" if value else "uncordoned"
        if bool((node.get("spec") or {}).get("unschedulable")) == value:
            return KubeResult(f"node {a.node} already {verb}", changed=False)
        body = {
            "metadata": {"resourceVersion": _meta(node).get("resourceVersion")},
            "spec": {"unschedulable": value},
        }
        self.api.call(
            f"patch node {a.node}", self.api.core.patch_node, a.node, body, _content_type=SMP, **self._dry(a)
        )
        return KubeResult(f"node {a.node} {verb}")

    def _cordon(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        return self._set_unschedulable(a, True)

    def _uncordon(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        return self._set_unschedulable(a, False)

    def _drain(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        """`kubectl drain --ignore-daemonsets --delete-emptydir-data` without `--force`: cordon,
        then evict every pod but DaemonSet, mirror and already terminating pods (an evicted pod
        stays, with `deletionTimestamp`, until its kubelet stops it); refuse before cordoning when a running
        pod has no controller (nothing would recreate it) or too few ready nodes would remain."""
        assert a.node
        nodes = self.api.call("list nodes", self.api.core.list_node).get("items") or []
        if not any(_meta(n).get("name") == a.node for n in nodes):
            raise KubeError(f"node {a.node} not found", retryable=False, status=404, reason="NotFound")
        others = [
            n
            for n in nodes
            if _meta(n).get("name") != a.node and _ready(n) and not (n.get("spec") or {}).get("unschedulable")
        ]
        if len(others) < self.settings.min_ready_nodes:
            raise refused(
                f"drain {a.node}: {len(others)} other ready, schedulable nodes would remain"
                f" (kube.min_ready_nodes {self.settings.min_ready_nodes})"
            )
        pods = (
            self.api.call(
                f"list pods on node {a.node}",
                self.api.core.list_pod_for_all_namespaces,
                field_selector=f"spec.nodeName={a.node}",
            ).get("items")
            or []
        )
        evict, skipped, terminating = [], 0, 0
        for pod in pods:
            meta = _meta(pod)
            if meta.get("deletionTimestamp"):  # evicted already (by a retry's first try): on its way
                terminating += 1
                continue
            finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            owner = _controller(pod)
            if MIRROR_POD in (meta.get("annotations") or {}) or (
                owner is not None and owner.get("kind") == "DaemonSet" and not finished
            ):
                skipped += 1
                continue
            if owner is None and not finished:
                raise refused(
                    f"drain {a.node}: pod {meta.get('namespace')}/{meta.get('name')} has no controller"
                )
            evict.append((meta.get("namespace", ""), meta.get("name", "")))
        self._disrupt(a, incident_id, None)
        cordon = self._set_unschedulable(a, True)
        blocked, gone = [], 0
        for ns, name in evict:
            try:
                self._evict(ns, name, a.dry_run)
            except KubeError as err:
                if err.status == 404:
                    gone += 1
                elif err.status == 429:
                    blocked.append(f"{ns}/{name}")
                else:
                    raise
        if blocked:
            raise KubeError(
                f"drain {a.node}: {len(blocked)} evictions blocked by PodDisruptionBudgets"
                f" ({', '.join(blocked[:5])}); the node stays cordoned, retryable later",
                retryable=True,
                status=429,
                reason="DisruptionBudget",
            )
        evicted = len(evict) - gone
        return KubeResult(
            f"{cordon.detail}; evicted {evicted} pods ({gone} already gone, {terminating} already"
            f" terminating, {skipped} DaemonSet or mirror pods left)",
            changed=cordon.changed or evicted > 0,
        )

    def _resize_pvc(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        assert a.namespace and a.name and a.scale and a.max_size
        what = f"PVC {a.namespace}/{a.name}"
        pvc = self._get(self.api.core.read_namespaced_persistent_volume_claim, "pvc", a.namespace, a.name)
        if (_meta(pvc).get("annotations") or {}).get(RESIZE_MARK) == incident_id:
            return KubeResult(f"{what} already resized for this incident", changed=False)
        spec = pvc.get("spec") or {}
        sc_name = spec.get("storageClassName")
        if not sc_name:
            raise refused(f"{what} has no storageClassName: cannot tell whether it may expand")
        sc = self._get(self.api.storage.read_storage_class, "storageclass", None, sc_name)
        if sc.get("allowVolumeExpansion") is not True:
            raise refused(f"{what}: StorageClass {sc_name} does not allow volume expansion")
        current = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
        if not current:
            raise refused(f"{what} requests no storage size")
        try:
            new = grown(str(current), a.scale, a.max_size)
            before = to_bytes(str(current))
        except (ValueError, ArithmeticError) as exc:
            raise refused(f"{what}: cannot read its size {current!r}: {exc}") from exc
        if new <= before:
            return KubeResult(
                f"{what} is already {current}, at or above max_size {a.max_size}", changed=False
            )
        body = {
            "metadata": {
                "resourceVersion": _meta(pvc).get("resourceVersion"),
                "annotations": {RESIZE_MARK: incident_id},
            },
            "spec": {"resources": {"requests": {"storage": format_bytes(new)}}},
        }
        self.api.call(
            f"resize {what}",
            self.api.core.patch_namespaced_persistent_volume_claim,
            a.name,
            a.namespace,
            body,
            _content_type=SMP,
            **self._dry(a),
        )
        return KubeResult(f"{what}: storage {current} → {format_bytes(new)}")

    def _job_from_cronjob(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        """What `kubectl create job --from=cronjob/<name>` creates, named for the incident."""
        assert a.namespace and a.cronjob
        cj = self._get(self.api.batch.read_namespaced_cron_job, "cronjob", a.namespace, a.cronjob)
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        name = job_name(a.cronjob, incident_id)
        annotations = {"cronjob.kubernetes.io/instantiate": "manual", **(tmeta.get("annotations") or {})}
        annotations[INCIDENT_MARK] = incident_id
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": a.namespace,
                "annotations": annotations,
                "labels": tmeta.get("labels") or {},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "CronJob",
                        "name": _meta(cj).get("name"),
                        "uid": _meta(cj).get("uid"),
                        "controller": True,
                    }
                ],
            },
            "spec": template.get("spec") or {},
        }
        what = f"Job {a.namespace}/{name}"
        try:
            self.api.call(
                f"create {what}", self.api.batch.create_namespaced_job, a.namespace, job, **self._dry(a)
            )
        except KubeError as err:
            if err.status == 409 and err.reason == "AlreadyExists":
                return KubeResult(f"{what} already created for this incident", changed=False)
            raise
        return KubeResult(f"{what} created from CronJob {a.cronjob}")

    def _delete_failed_job(self, a: KubeAction, incident_id: str, since: datetime) -> KubeResult:
        assert a.namespace and a.name
        what = f"Job {a.namespace}/{a.name}"
        job = self._maybe(self.api.batch.read_namespaced_job, "job", a.namespace, a.name)
        if job is None:
            return KubeResult(f"{what} is already gone", changed=False)
        conds = (job.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Failed" and c.get("status") == "True" for c in conds):
            raise refused(f"{what} has not failed (no Failed condition): left alone")
        try:
            self.api.call(
                f"delete {what}",
                self.api.batch.delete_namespaced_job,
                a.name,
                a.namespace,
                propagation_policy="Background",
                **self._dry(a),
            )
        except KubeError as err:
            if err.status == 404:
                return KubeResult(f"{what} is already gone", changed=False)
            raise
        return KubeResult(f"{what} deleted (its pods in the background)")
