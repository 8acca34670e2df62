"""The fake API server: object store, REST semantics, the scale and eviction subresources, and the
Flux controllers; served by the HTTP plumbing the forge fakes share. See the package docstring."""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import yaml

from connectors.kube.quantity import to_bytes
from tests.support.forges.http import Served

Obj = dict[str, Any]
TOKEN = "kube-fake-token"

#: (group, resource) → (kind, namespaced).
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    ("", "pods"): ("Pod", True),
    ("", "nodes"): ("Node", False),
    ("", "persistentvolumeclaims"): ("PersistentVolumeClaim", True),
    ("apps", "deployments"): ("Deployment", True),
    ("apps", "statefulsets"): ("StatefulSet", True),
    ("apps", "daemonsets"): ("DaemonSet", True),
    ("apps", "replicasets"): ("ReplicaSet", True),
    ("batch", "jobs"): ("Job", True),
    ("batch", "cronjobs"): ("CronJob", True),
    ("policy", "poddisruptionbudgets"): ("PodDisruptionBudget", True),
    ("storage.k8s.io", "storageclasses"): ("StorageClass", False),
    ("coordination.k8s.io", "leases"): ("Lease", True),
    # Flux's custom resources (the CRDs a Flux install adds), for `gitops_sync`.
    ("kustomize.toolkit.fluxcd.io", "kustomizations"): ("Kustomization", True),
    ("helm.toolkit.fluxcd.io", "helmreleases"): ("HelmRelease", True),
    ("", "events"): ("Event", True),
}
#: Field selectors the API server supports: every resource has the metadata ones; some add more
#: (pkg/registry/core/pod/strategy.go `ToSelectableFields`, core/event/strategy.go
#: `ToSelectableFields`, core/node/strategy.go). An unknown one is a 400.
_FIELDS = {"metadata.name", "metadata.namespace"}
_RESOURCE_FIELDS = {
    "pods": {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    },
    "nodes": {"spec.unschedulable"},
    "events": {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    },
}
#: The served version of each group (v1 unless named here).
VERSIONS = {"helm.toolkit.fluxcd.io": "v2"}
#: Custom resources: no strategic merge patch (their schemas have no patch strategy).
CUSTOM_GROUPS = frozenset({"kustomize.toolkit.fluxcd.io", "helm.toolkit.fluxcd.io"})
FLUX_REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
_GROUP_OF = {kind: group for (group, _), (kind, _) in RESOURCES.items()}
_RESOURCE_OF = {kind: resource for (_, resource), (kind, _) in RESOURCES.items()}
_PATCH_TYPES = (
    "application/strategic-merge-patch+json",
    "application/merge-patch+json",
    "application/json-patch+json",
)
_SCALABLE = ("deployments", "statefulsets", "replicasets")


@dataclass(frozen=True)
class RbacCall:
    """One request as RBAC authorizes it."""

    group: str
    resource: str
    verb: str
    namespace: str
    name: str


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> NoReturn:
    raise ApiError(
        404,
        "NotFound",
        f'{_qualified(group, resource)} "{name}" not found',
        {"name": name, "group": group, "kind": resource},
    )


def invalid(kind: str, group: str, name: str, field: str, detail: str) -> NoReturn:
    qualified = f"{kind}.{group}" if group else kind
    raise ApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {field}: {detail}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "field": field, "message": detail}],
        },
    )


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch (also how a strategic merge patch treats the maps selfheal sends)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def _json_patch(target: Obj, ops: list[Obj]) -> Obj:
    out = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op.get("path", "")).split("/")[1:]]
        parent: Any = out
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1] if parts else ""
        if op.get("op") in ("add", "replace"):
            parent[last] = op.get("value")
        elif op.get("op") == "remove":
            parent.pop(last, None)
        else:
            raise ApiError(400, "BadRequest", f"unsupported JSON patch op {op.get('op')!r}")
    return out


#: The conditions the Flux controllers own (and rewrite on every reconciliation).
_FLUX_OWNED = frozenset({"Ready", "Reconciling", "Stalled", "Healthy", "Released"})


def _cond(type_: str, status: str, reason: str, message: str) -> Obj:
    """A metav1.Condition as the Flux controllers write them."""
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-06-01T12:00:00Z",
    }


def _chart_version(source_revision: str, base: str = "0.1.0") -> str:
    """The version source-controller gives a chart built from a GitRepository with
    `reconcileStrategy: Revision`: SemVer metadata of the commit's first 12 hex
    (internal/controller/helmchart_controller.go)."""
    sha = source_revision.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return f"{base}+{sha[:12]}"


def _release(namespace: str, name: str, number: int, chart_version: str, failed: bool) -> Obj:
    """One `status.history` snapshot of a HelmRelease (helm-controller api/v2 snapshot_types.go)."""
    return {
        "name": name,
        "namespace": namespace,
        "version": number,
        "status": "failed" if failed else "deployed",
        "chartName": name,
        "chartVersion": chart_version,
        "appVersion": "1.0.0",
        "configDigest": "sha256:" + "0" * 64,
        "digest": "sha256:" + f"{number:064x}",
        "firstDeployed": "2025-01-01T00:00:00Z",
        "lastDeployed": "2025-06-01T12:00:00Z",
    }


def _too_many(cause: str, retry_after: int) -> NoReturn:
    """The eviction subresource's 429 (pkg/registry/core/pod/storage/eviction.go)."""
    details: Obj = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    raise ApiError(
        429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.", details
    )


def _micro_time(value: Any) -> bool:
    """A metav1.MicroTime as the API server parses it (`2006-01-02T15:04:05.000000Z07:00`)."""
    return (
        isinstance(value, str)
        and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)", value) is not None
    )


def _ready(obj: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


class KubeFake(Served):
    """Served on a real socket by the HTTP plumbing the forge fakes share (`with KubeFake() as fake`)."""

    def __init__(self, *, token: str = TOKEN) -> None:
        self.token = token
        self.objects: dict[tuple[str, str, str, str], Obj] = {}
        self.requests: list[RbacCall] = []
        #: (resource, name, propagationPolicy) of every delete that went through.
        self.deletions: list[tuple[str, str, str | None]] = []
        self.lock = threading.RLock()
        self._rv = itertools.count(1000)
        #: A workload whose spec changed completes its rollout after this many reads (0: never by itself)
        #: or, with `rollouts_stall`, has its Deployment controller give up (ProgressDeadlineExceeded).
        self.rollouts_complete_after = 0
        self.rollouts_stall = False
        self._reads_since_change: dict[tuple[str, str, str, str], int] = {}
        #: The Flux controllers: when set, a Kustomization or HelmRelease whose
        #: `reconcile.fluxcd.io/requestedAt` changed reconciles to this source revision
        #: (`main@sha1:<sha>`, the GitRepository's `status.artifact.revision`, called when the
        #: reconciliation starts) on its `flux_reads`-th read, Ready; `flux_failure` makes it fail
        #: instead (Ready=False, `flux_failure_reason`), `flux_stalled` also marks it Stalled.
        self.flux_source: Callable[[], str] | None = None
        self.flux_reads = 1
        self.flux_failure = ""
        self.flux_failure_reason = "ReconciliationFailed"
        self.flux_stalled = ""
        self._flux_reads: dict[tuple[str, str, str], int] = {}
        self._flux_started: dict[tuple[str, str, str], str] = {}

    @property
    def url(self) -> str:
        return self.root

    def kubeconfig(self, directory: Path, *, context: str = "fake") -> Path:
        """A kubeconfig file pointing at this server with its bearer token."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "selfheal", "user": {"token": self.token}}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "selfheal"}}],
            "current-context": context,
        }
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump(doc))
        return path

    # --- seeding and inspection -----------------------------------------------------------------------

    def _key(self, kind: str, namespace: str | None, name: str) -> tuple[str, str, str, str]:
        return (_GROUP_OF[kind], _RESOURCE_OF[kind], namespace or "", name)

    def add(self, *objs: Obj) -> None:
        for obj in objs:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            with self.lock:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", "2025-01-01T00:00:00Z")
                meta["resourceVersion"] = str(next(self._rv))
                self.objects[self._key(obj["kind"], meta.get("namespace"), meta["name"])] = obj

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        with self.lock:
            found = self.objects.get(self._key(kind, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def set_status(self, kind: str, namespace: str | None, name: str, status: Obj) -> None:
        """What a controller would write to the status subresource (merged; resourceVersion bumps)."""
        with self.lock:
            obj = self.objects[self._key(kind, namespace, name)]
            obj["status"] = merge(obj.get("status") or {}, status)
            obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def complete_rollout(self, kind: str, namespace: str, name: str) -> None:
        with self.lock:
            obj = self.objects[self._key(kind, namespace, name)]
            self._complete(obj)

    def _complete(self, obj: Obj) -> None:
        gen = obj["metadata"].get("generation", 1)
        replicas = (obj.get("spec") or {}).get("replicas", 1)
        kind = obj["kind"]
        if kind == "Deployment":
            status = {
                "observedGeneration": gen,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                    {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
                ],
            }
        elif kind == "StatefulSet":
            rev = f"{obj['metadata']['name']}-{gen}"
            status = {
                "observedGeneration": gen,
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
                "currentReplicas": replicas,
                "currentRevision": rev,
                "updateRevision": rev,
            }
        else:
            n = (obj.get("status") or {}).get("desiredNumberScheduled", 1)
            status = {
                "observedGeneration": gen,
                "updatedNumberScheduled": n,
                "numberReady": n,
                "numberAvailable": n,
            }
        obj["status"] = merge(obj.get("status") or {}, status)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def stall_rollout(self, namespace: str, name: str) -> None:
        """The Deployment controller giving up: Progressing=False, reason ProgressDeadlineExceeded."""
        with self.lock:
            obj = self.objects[self._key("Deployment", namespace, name)]
            obj["status"]["observedGeneration"] = obj["metadata"].get("generation", 1)
            obj["status"]["updatedReplicas"] = 1
            obj["status"]["conditions"] = [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{name}-7c9f" has timed out progressing.',
                },
            ]
            obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def calls(self, verb: str | None = None) -> list[RbacCall]:
        with self.lock:
            return [c for c in self.requests if verb is None or c.verb == verb]

    # --- dispatch ---------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Obj]:
        try:
            if headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            url = urlsplit(target)
            query = {k: v for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            group, resource, namespace, name, sub = self._route(url.path)
            payload = json.loads(body) if body else None
            with self.lock:
                return self._serve(method, group, resource, namespace, name, sub, query, headers, payload)
        except ApiError as err:
            return err.code, err.status()
        except json.JSONDecodeError as exc:
            return 400, ApiError(400, "BadRequest", f"invalid JSON: {exc}").status()

    def _route(self, path: str) -> tuple[str, str, str, str, str]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, rest = "", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis" and parts[2] == VERSIONS.get(parts[1], "v1"):
            group, rest = parts[1], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3 or (group, rest[0]) not in RESOURCES:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        _, namespaced = RESOURCES[(group, rest[0])]
        if namespaced != bool(namespace) and len(rest) > 1:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return group, rest[0], namespace, rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""

    def _serve(
        self,
        method: str,
        group: str,
        resource: str,
        namespace: str,
        name: str,
        sub: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        payload: Any,
    ) -> tuple[int, Obj]:
        rbac = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete",
        }
        self.requests.append(
            RbacCall(
                group,
                f"{resource}/{sub}" if sub else resource,
                rbac.get(method, method.lower()),
                namespace,
                name,
            )
        )
        dry = self._dry_run(query, method, payload)
        if sub == "scale" and resource in _SCALABLE:
            return self._scale(method, group, resource, namespace, name, headers, payload, dry)
        if sub == "eviction" and resource == "pods" and method == "POST":
            return self._eviction(namespace, name, payload, dry)
        if sub:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if method == "GET" and not name:
            return 200, self._list(group, resource, namespace, query)
        if method == "GET":
            return 200, self._read(group, resource, namespace, name)
        if method == "POST" and not name:
            return 201, self._create(group, resource, namespace, payload, dry)
        if method == "PUT":
            return 200, self._replace(group, resource, namespace, name, payload, dry)
        if method == "PATCH":
            return 200, self._patch(group, resource, namespace, name, headers, payload, dry)
        if method == "DELETE":
            return 200, self._delete(group, resource, namespace, name, query, payload, dry)
        raise ApiError(
            405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
        )

    def _dry_run(self, query: dict[str, list[str]], method: str, payload: Any) -> bool:
        values = query.get("dryRun", [])
        options = {
            "POST": "CreateOptions",
            "PATCH": "PatchOptions",
            "PUT": "UpdateOptions",
            "DELETE": "DeleteOptions",
        }
        for value in values:
            if value != "All":
                kind = options.get(method, "CreateOptions")
                raise ApiError(
                    422,
                    "Invalid",
                    f'{kind}.meta.k8s.io "" is invalid: dryRun: Unsupported value: "{value}":'
                    ' supported values: "All"',
                    {"group": "meta.k8s.io", "kind": kind},
                )
        if method == "DELETE" and isinstance(payload, dict) and "All" in (payload.get("dryRun") or []):
            return True
        return bool(values)

    # --- plain REST -------------------------------------------------------------------------------

    def _stored(self, group: str, resource: str, namespace: str, name: str) -> Obj:
        obj = self.objects.get((group, resource, namespace, name))
        if obj is None:
            not_found(group, resource, name)
        return obj

    def _read(self, group: str, resource: str, namespace: str, name: str) -> Obj:
        key = (group, resource, namespace, name)
        obj = self._stored(*key)
        if group in CUSTOM_GROUPS and self.flux_source is not None:
            self._flux_reconcile(obj)
        if self.rollouts_complete_after and key in self._reads_since_change:
            self._reads_since_change[key] += 1
            if self._reads_since_change[key] >= self.rollouts_complete_after:
                del self._reads_since_change[key]
                if self.rollouts_stall and obj["kind"] == "Deployment":
                    self.stall_rollout(namespace, name)
                else:
                    self._complete(obj)
        return copy.deepcopy(obj)

    def _flux_reconcile(self, obj: Obj) -> None:
        """What kustomize-controller (internal/controller/kustomization_controller.go) and
        helm-controller do with a reconcile request: Ready=Unknown/Progressing while it runs
        (`flux_reads` reads), then Ready and `lastHandledReconcileAt` (set in `finalizeStatus`);
        `observedGeneration` only moves on success."""
        assert self.flux_source is not None
        requested = (obj["metadata"].get("annotations") or {}).get(FLUX_REQUESTED_AT)
        status = obj.setdefault("status", {})
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if not requested or status.get("lastHandledReconcileAt") == requested:
            return
        source = self._flux_started.setdefault(key, self.flux_source())
        attempted = source if obj["kind"] == "Kustomization" else _chart_version(source)
        conditions = [c for c in status.get("conditions") or [] if c.get("type") not in _FLUX_OWNED]
        self._flux_reads[key] = self._flux_reads.get(key, 0) + 1
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        if self._flux_reads[key] < self.flux_reads:
            status["lastAttemptedRevision"] = attempted
            status["conditions"] = [
                *conditions,
                _cond("Ready", "Unknown", "Progressing", "Reconciliation in progress"),
                _cond("Reconciling", "True", "Progressing", f"Fetching manifests for revision {source}"),
            ]
            return
        del self._flux_reads[key], self._flux_started[key]
        status["lastHandledReconcileAt"] = requested
        status["lastAttemptedRevision"] = attempted
        if obj["kind"] == "HelmRelease":
            ready = self._helm_release(obj, attempted)
        elif self.flux_failure:
            ready = _cond("Ready", "False", self.flux_failure_reason, self.flux_failure)
        else:
            status["lastAppliedRevision"] = source
            ready = _cond("Ready", "True", "ReconciliationSucceeded", f"Applied revision: {source}")
        if ready["status"] == "True":
            status["observedGeneration"] = obj["metadata"].get("generation", 1)
            status["conditions"] = [*conditions, ready]
        else:
            retry = _cond("Reconciling", "True", "ProgressingWithRetry", ready["message"])
            status["conditions"] = [*conditions, ready, retry]
        if self.flux_stalled:
            status["conditions"].append(_cond("Stalled", "True", ready["reason"], self.flux_stalled))

    def _helm_release(self, obj: Obj, chart_version: str) -> Obj:
        """A Helm upgrade to `chart_version`: a new release in `status.history` (newest first),
        Ready as helm-controller reports it (api/v2 has no `lastAppliedRevision`)."""
        meta, status = obj["metadata"], obj["status"]
        history = [dict(h) for h in status.get("history") or []]
        number = max((int(h.get("version") or 0) for h in history), default=0) + 1
        release = f"{meta['namespace']}/{meta['name']}.v{number}"
        chart = meta["name"]
        failed = bool(self.flux_failure)
        if not failed:
            for h in history:
                if h.get("status") == "deployed":
                    h["status"] = "superseded"
        history.insert(0, _release(meta["namespace"], meta["name"], number, chart_version, failed))
        status["history"] = history[:5]
        status["lastAttemptedReleaseAction"] = "upgrade"
        if failed:
            status["failures"] = int(status.get("failures") or 0) + 1
            status["upgradeFailures"] = int(status.get("upgradeFailures") or 0) + 1
            message = f"Helm upgrade failed for release {release} with chart {chart}@{chart_version}:"
            return _cond("Ready", "False", "UpgradeFailed", f"{message} {self.flux_failure}")
        status.pop("upgradeFailures", None)
        message = f"Helm upgrade succeeded for release {release} with chart {chart}@{chart_version}"
        return _cond("Ready", "True", "UpgradeSucceeded", message)

    def _list(self, group: str, resource: str, namespace: str, query: dict[str, list[str]]) -> Obj:
        fields = self._selector(query.get("fieldSelector", [""])[0], field=True, resource=resource)
        labels = self._selector(query.get("labelSelector", [""])[0], field=False, resource=resource)
        items = []
        for (g, r, ns, _), obj in sorted(self.objects.items()):
            if (g, r) != (group, resource) or (namespace and ns != namespace):
                continue
            if all((self._field(obj, k) == v) == eq for k, eq, v in fields) and all(
                ((obj["metadata"].get("labels") or {}).get(k) == v) == eq for k, eq, v in labels
            ):
                items.append(copy.deepcopy(obj))
        kind, _ = RESOURCES[(group, resource)]
        return {
            "kind": f"{kind}List",
            "apiVersion": f"{group}/{VERSIONS.get(group, 'v1')}" if group else "v1",
            "metadata": {"resourceVersion": str(next(self._rv) - 1)},
            "items": items,
        }

    @staticmethod
    def _selector(text: str, *, field: bool, resource: str) -> list[tuple[str, bool, str]]:
        """`key=value`, `key==value` and `key!=value` terms, comma-separated: (key, equal, value)."""
        out = []
        for term in filter(None, text.split(",")):
            key, sep, value = term.partition("=")
            if not sep:
                raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")
            equal = not key.endswith("!")
            key, value = key.rstrip("!").strip(), value.removeprefix("=").strip()
            if field and key not in _FIELDS | _RESOURCE_FIELDS.get(resource, set()):
                if resource in _RESOURCE_FIELDS:  # a resource with its own field label conversion
                    raise ApiError(400, "BadRequest", f"field label not supported: {key}")
                raise ApiError(
                    400,
                    "BadRequest",
                    f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"',
                )
            out.append((key, equal, value))
        return out

    @staticmethod
    def _field(obj: Obj, path: str) -> str:
        if obj.get("kind") == "Event" and path == "source":  # source.component, else the reporter
            return str((obj.get("source") or {}).get("component") or obj.get("reportingComponent") or "")
        value: Any = obj
        for part in path.split("."):
            value = (value or {}).get(part) if isinstance(value, dict) else None
        if isinstance(value, bool):
            return str(value).lower()
        return "" if value is None else str(value)

    def _create(self, group: str, resource: str, namespace: str, payload: Any, dry: bool) -> Obj:
        kind, _ = RESOURCES[(group, resource)]
        if not isinstance(payload, dict) or payload.get("kind") not in (None, kind):
            raise ApiError(400, "BadRequest", f"the body is not a {kind}")
        meta = payload.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            invalid(kind, group, "", "metadata.name", "Required value: name or generateName is required")
        if meta.get("namespace") not in (None, namespace):
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        key = (group, resource, namespace, name)
        if key in self.objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{_qualified(group, resource)} "{name}" already exists',
                {"name": name, "group": group, "kind": resource},
            )
        obj = copy.deepcopy(payload)
        obj["apiVersion"], obj["kind"] = (f"{group}/{VERSIONS.get(group, 'v1')}" if group else "v1"), kind
        obj["metadata"].update(
            namespace=namespace or None,
            uid=str(uuid.uuid4()),
            creationTimestamp="2025-06-01T12:00:00Z",
            resourceVersion="0",
        )
        if not namespace:
            obj["metadata"].pop("namespace")
        if "spec" in obj:
            obj["metadata"]["generation"] = 1
        self._validate(obj, None)
        if not dry:
            obj["metadata"]["resourceVersion"] = str(next(self._rv))
            self.objects[key] = obj
        return copy.deepcopy(obj)

    def _write(self, key: tuple[str, str, str, str], old: Obj, new: Obj, dry: bool) -> Obj:
        """Validate and store `new` in place of `old`: generation on spec change, a new resourceVersion."""
        new["metadata"]["uid"] = old["metadata"].get("uid")
        new["metadata"]["creationTimestamp"] = old["metadata"].get("creationTimestamp")
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])  # status is the controller's (its own subresource)
        if new.get("spec") != old.get("spec") and "generation" in old["metadata"]:
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        else:
            new["metadata"]["generation"] = old["metadata"].get("generation")
            if new["metadata"]["generation"] is None:
                new["metadata"].pop("generation")
        self._validate(new, old)
        if dry:
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return copy.deepcopy(new)
        new["metadata"]["resourceVersion"] = str(next(self._rv))
        if new.get("spec") != old.get("spec") and new["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            self._reads_since_change[key] = 0
        self.objects[key] = new
        return copy.deepcopy(new)

    @staticmethod
    def _check_version(old: Obj, sent: Any, group: str, resource: str, name: str) -> None:
        if sent not in (None, "") and str(sent) != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": the object'
                " has been modified; please apply your changes to the latest version and try again",
                {"name": name, "group": group, "kind": resource},
            )

    def _replace(self, group: str, resource: str, namespace: str, name: str, payload: Any, dry: bool) -> Obj:
        key = (group, resource, namespace, name)
        old = self._stored(*key)
        if not isinstance(payload, dict) or (payload.get("metadata") or {}).get("name") != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        self._check_version(old, payload["metadata"].get("resourceVersion"), group, resource, name)
        return self._write(key, old, copy.deepcopy(payload), dry)

    def _patched(self, old: Obj, headers: dict[str, str], payload: Any) -> Obj:
        ctype = headers.get("content-type", "").split(";")[0].strip()
        if ctype not in _PATCH_TYPES:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(_PATCH_TYPES),
            )
        if ctype == "application/json-patch+json":
            if not isinstance(payload, list):
                raise ApiError(
                    400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
            return _json_patch(old, payload)
        if not isinstance(payload, dict):
            raise ApiError(400, "BadRequest", "the patch is not a JSON object")
        return merge(old, payload)

    def _patch(
        self,
        group: str,
        resource: str,
        namespace: str,
        name: str,
        headers: dict[str, str],
        payload: Any,
        dry: bool,
    ) -> Obj:
        key = (group, resource, namespace, name)
        old = self._stored(*key)
        ctype = headers.get("content-type", "").split(";")[0].strip()
        if group in CUSTOM_GROUPS and ctype == "application/strategic-merge-patch+json":
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include:"
                " application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            )
        new = self._patched(old, headers, payload)
        if isinstance(payload, dict):
            self._check_version(
                old, (payload.get("metadata") or {}).get("resourceVersion"), group, resource, name
            )
        return self._write(key, old, new, dry)

    def _delete(
        self,
        group: str,
        resource: str,
        namespace: str,
        name: str,
        query: dict[str, list[str]],
        payload: Any,
        dry: bool,
    ) -> Obj:
        key = (group, resource, namespace, name)
        old = self._stored(*key)
        options = payload if isinstance(payload, dict) else {}
        pre = (options.get("preconditions") or {}).get("resourceVersion")
        if pre is not None and str(pre) != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}":'
                f" Precondition failed: ResourceVersion in precondition: {pre},"
                f" ResourceVersion in object meta: {old['metadata']['resourceVersion']}",
            )
        policy = query.get("propagationPolicy", [options.get("propagationPolicy")])[0]
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise ApiError(
                400,
                "BadRequest",
                f"propagationPolicy {policy!r} is not one of Orphan, Background, Foreground",
            )
        grace = query.get("gracePeriodSeconds", [options.get("gracePeriodSeconds")])[0]
        if dry:
            gone = copy.deepcopy(old)
            gone["metadata"]["deletionTimestamp"] = "2025-06-01T12:00:00Z"
            return gone
        self.deletions.append((resource, name, policy))
        if resource == "pods":
            return copy.deepcopy(self._remove_pod(key, None if grace is None else int(grace)))
        del self.objects[key]
        next(self._rv)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": group, "kind": resource, "uid": old["metadata"].get("uid")},
        }

    def _remove_pod(self, key: tuple[str, str, str, str], grace: int | None) -> Obj:
        """A pod delete as the pod strategy's `CheckGracefulDelete` has it: an unscheduled or finished
        pod goes at once; a running one gets `deletionTimestamp` and stays, terminating, until its
        kubelet confirms (`finish_terminations`). The pod as it is after the delete."""
        pod = self.objects[key]
        spec, meta = pod.get("spec") or {}, pod["metadata"]
        if grace is None:
            grace = int(spec.get("terminationGracePeriodSeconds", 30))
        finished = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if grace == 0 or not spec.get("nodeName") or finished:
            del self.objects[key]
            next(self._rv)
            return pod
        if not meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = "2025-06-01T12:00:30Z"
            meta["deletionGracePeriodSeconds"] = grace
            meta["resourceVersion"] = str(next(self._rv))
        return pod

    def finish_terminations(self) -> None:
        """The kubelets confirm: every terminating pod is gone."""
        with self.lock:
            for key, obj in list(self.objects.items()):
                if key[1] == "pods" and obj["metadata"].get("deletionTimestamp"):
                    del self.objects[key]

    # --- validation -------------------------------------------------------------------------------

    def _validate(self, obj: Obj, old: Obj | None) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        group, spec = _GROUP_OF[kind], obj.get("spec") or {}
        if kind in ("Deployment", "StatefulSet", "ReplicaSet"):
            replicas = spec.get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                invalid(
                    kind,
                    group,
                    name,
                    "spec.replicas",
                    f"Invalid value: {replicas}: must be greater than or equal to 0",
                )
        if kind == "Job" and not (spec.get("template") or {}).get("spec", {}).get("containers"):
            invalid(kind, group, name, "spec.template.spec.containers", "Required value")
        if kind == "Node" and not isinstance(spec.get("unschedulable", False), bool):
            invalid(kind, group, name, "spec.unschedulable", "Invalid value: must be a boolean")
        if kind == "PersistentVolumeClaim" and old is not None:
            self._validate_pvc(obj, old)
        if kind == "Lease":
            for key in ("acquireTime", "renewTime"):
                if spec.get(key) is not None and not _micro_time(spec[key]):
                    raise ApiError(  # a decode error, before validation: 400, not 422
                        400,
                        "BadRequest",
                        f'Lease in version "v1" cannot be handled as a Lease: parsing time "{spec[key]}"'
                        ' as "2006-01-02T15:04:05.000000Z07:00": cannot parse as ".000000"',
                    )
            duration = spec.get("leaseDurationSeconds")
            if duration is not None and (not isinstance(duration, int) or duration <= 0):
                invalid(
                    kind,
                    group,
                    name,
                    "spec.leaseDurationSeconds",
                    f"Invalid value: {duration}: must be greater than 0",
                )

    def _validate_pvc(self, obj: Obj, old: Obj) -> None:
        name = obj["metadata"]["name"]

        def size(o: Obj) -> int:
            return to_bytes(
                str(((o.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage", "0"))
            )

        try:
            new_size, old_size = size(obj), size(old)
        except ValueError:
            invalid(
                "PersistentVolumeClaim",
                "",
                name,
                "spec.resources.requests.storage",
                "Invalid value: must be a quantity",
            )
        if new_size < old_size:
            invalid(
                "PersistentVolumeClaim",
                "",
                name,
                "spec.resources.requests.storage",
                "Forbidden: field can not be less than previous value",
            )
        if new_size > old_size:
            sc_name = (old.get("spec") or {}).get("storageClassName") or ""
            sc = self.objects.get(("storage.k8s.io", "storageclasses", "", sc_name)) or {}
            if sc.get("allowVolumeExpansion") is not True:
                raise ApiError(
                    403,
                    "Forbidden",
                    f'persistentvolumeclaims "{name}" is forbidden: only dynamically provisioned pvc can be'
                    " resized and the storageclass that provisions the pvc must support resize",
                )
        frozen = {k: v for k, v in (obj.get("spec") or {}).items() if k != "resources"}
        if frozen != {k: v for k, v in (old.get("spec") or {}).items() if k != "resources"}:
            invalid(
                "PersistentVolumeClaim",
                "",
                name,
                "spec",
                "Forbidden: spec is immutable after creation except resources.requests",
            )

    # --- subresources ------------------------------------------------------------------------------

    def _scale(
        self,
        method: str,
        group: str,
        resource: str,
        namespace: str,
        name: str,
        headers: dict[str, str],
        payload: Any,
        dry: bool,
    ) -> tuple[int, Obj]:
        key = (group, resource, namespace, name)
        parent = self._stored(*key)

        def as_scale(obj: Obj) -> Obj:
            meta = obj["metadata"]
            return {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {
                    k: meta[k]
                    for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                    if k in meta
                },
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                "status": {
                    "replicas": (obj.get("status") or {}).get("replicas", 0),
                    "selector": f"app={name}",
                },
            }

        if method == "GET":
            return 200, as_scale(parent)
        if method not in ("PATCH", "PUT"):
            raise ApiError(
                405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
            )
        scale = self._patched(as_scale(parent), headers, payload) if method == "PATCH" else payload
        if isinstance(payload, dict):
            self._check_version(
                parent, (payload.get("metadata") or {}).get("resourceVersion"), group, resource, name
            )
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            invalid(
                "Scale",
                "autoscaling",
                name,
                "spec.replicas",
                f"Invalid value: {replicas}: must be greater than or equal to 0",
            )
        new = copy.deepcopy(parent)
        new["spec"]["replicas"] = replicas
        return 200, as_scale(self._write(key, parent, new, dry))

    def _eviction(self, namespace: str, name: str, payload: Any, dry_query: bool) -> tuple[int, Obj]:
        """policy/v1 Eviction as `pkg/registry/core/pod/storage/eviction.go` decides it."""
        if not isinstance(payload, dict) or (payload.get("metadata") or {}).get("name") != name:
            raise ApiError(400, "BadRequest", "name in URL does not match name in Eviction object")
        body_dry = (payload.get("deleteOptions") or {}).get("dryRun") or []
        if body_dry and dry_query and body_dry != ["All"]:
            raise ApiError(
                400,
                "BadRequest",
                f"Non-matching dry-run options in request and content: [All] and {body_dry}",
            )
        dry = dry_query or body_dry == ["All"]
        key = ("", "pods", namespace, name)
        pod = self._stored(*key)
        phase = (pod.get("status") or {}).get("phase")
        success = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        if phase in ("Succeeded", "Failed", "Pending") or pod["metadata"].get("deletionTimestamp"):
            if not dry:
                self._remove_pod(key, None)
            return 201, success
        labels = pod["metadata"].get("labels") or {}
        pdbs = [
            obj
            for (g, r, ns, _), obj in self.objects.items()
            if (g, r, ns) == ("policy", "poddisruptionbudgets", namespace)
            and (sel := ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels"))
            and all(labels.get(k) == v for k, v in sel.items())
        ]
        if len(pdbs) > 1:
            raise ApiError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not"
                " support.",
            )
        if pdbs:
            pdb, status = pdbs[0], pdbs[0].get("status") or {}
            healthy_enough = status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0) > 0
            if not (not _ready(pod) and healthy_enough):
                # `checkAndDecrement`: a budget its controller has not caught up with, then one
                # with no disruption left, are both 429 with a DisruptionBudget cause.
                pdb_name = pdb["metadata"]["name"]
                if status.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
                    _too_many(f"The disruption budget {pdb_name} is still being processed by the server.", 10)
                if status.get("disruptionsAllowed", 0) == 0:
                    _too_many(
                        f"The disruption budget {pdb_name} needs {status.get('desiredHealthy', 0)} healthy"
                        f" pods and has {status.get('currentHealthy', 0)} currently",
                        0,
                    )
                if not dry:
                    status["disruptionsAllowed"] -= 1
                    status.setdefault("disruptedPods", {})[name] = "2025-06-01T12:00:00Z"
                    pdb["metadata"]["resourceVersion"] = str(next(self._rv))
        if not dry:
            self._remove_pod(key, None)
        return 201, success
