"""The blast-radius budget: at most N disruptive verbs in flight per cluster and per namespace.

Slots are Leases (coordination.k8s.io/v1) with fixed names, `selfheal-inflight-<i>` in the
target namespace and `selfheal-inflight-cluster-<i>` in `kube.lease_namespace`. The cluster is the
one state every worker shares and outlives them all; the API server's optimistic concurrency
(create answers 409 AlreadyExists, replace with a stale resourceVersion answers 409 Conflict) lets
exactly one taker win a slot. A slot names its holder (the incident), so a retried verb finds its
own slot instead of taking a second, and it expires after `in_flight_seconds`, so a worker that
died mid-remediation cannot hold the budget forever; a successful `kube_wait` frees it earlier.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connectors.kube.api import KubeApi, KubeError, Obj

NAMESPACE_SLOT = "selfheal-inflight"
CLUSTER_SLOT = "selfheal-inflight-cluster"


@dataclass(frozen=True)
class Scope:
    namespace: str
    prefix: str
    size: int
    label: str


def _micro_time(now: datetime) -> datetime:
    """`now` for a MicroTime field. The client validates the body into a `V1Lease` and writes its
    datetimes with `isoformat()`, which leaves the fraction out when it is zero; the API server
    parses MicroTime as `2006-01-02T15:04:05.000000Z07:00` and answers 400 to anything else. A
    zero fraction becomes one microsecond, so there are always six digits."""
    return now.replace(microsecond=now.microsecond or 1)


def _parse(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


class Budget:
    def __init__(
        self,
        api: KubeApi,
        *,
        lease_namespace: str,
        per_cluster: int,
        per_namespace: int,
        hold_seconds: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.lease_namespace = lease_namespace
        self.per_cluster = per_cluster
        self.per_namespace = per_namespace
        self.hold_seconds = hold_seconds
        self.now = now

    def _scopes(self, namespace: str | None) -> list[Scope]:
        scopes = [Scope(self.lease_namespace, CLUSTER_SLOT, self.per_cluster, "the cluster")]
        if namespace is not None:
            scopes.append(Scope(namespace, NAMESPACE_SLOT, self.per_namespace, f"namespace {namespace}"))
        return scopes

    def acquire(self, holder: str, namespace: str | None) -> None:
        """Take (or find already taken) one cluster slot and one slot in `namespace`; a retryable
        KubeError when either budget is spent (what was taken by this call is given back)."""
        taken: list[tuple[Scope, str]] = []
        for scope in self._scopes(namespace):
            name = self._take(scope, holder)
            if name is None:
                for s, n in taken:
                    self._free(s.namespace, n, holder)
                raise KubeError(
                    f"blast-radius budget: {scope.size} disruptive kube actions already in flight in"
                    f" {scope.label} (kube.max_in_flight); retrying later",
                    retryable=True,
                    reason="BudgetExhausted",
                )
            taken.append((scope, name))

    def release(self, holder: str, namespace: str | None) -> None:
        """Give back whatever slots `holder` holds (none held: nothing to do)."""
        for scope in self._scopes(namespace):
            for i in range(scope.size):
                self._free(scope.namespace, f"{scope.prefix}-{i}", holder)

    def _take(self, scope: Scope, holder: str) -> str | None:
        free: list[tuple[str, Obj | None]] = []
        for i in range(scope.size):
            name = f"{scope.prefix}-{i}"
            lease = self._read(scope.namespace, name)
            spec = (lease or {}).get("spec") or {}
            if lease is not None and spec.get("holderIdentity") == holder:
                return name
            if lease is None or self._expired(spec):
                free.append((name, lease))
        for name, lease in free:
            if self._claim(scope.namespace, name, lease, holder):
                return name
        return None

    def _expired(self, spec: Obj) -> bool:
        renewed = _parse(spec.get("renewTime")) or _parse(spec.get("acquireTime"))
        duration = spec.get("leaseDurationSeconds") or 0
        return (
            not spec.get("holderIdentity")
            or renewed is None
            or renewed + timedelta(seconds=duration) < self.now()
        )

    def _read(self, namespace: str, name: str) -> Obj | None:
        try:
            return self.api.call(
                f"get lease {namespace}/{name}", self.api.coordination.read_namespaced_lease, name, namespace
            )
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def _claim(self, namespace: str, name: str, lease: Obj | None, holder: str) -> bool:
        stamp = _micro_time(self.now())
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": int(self.hold_seconds),
            "acquireTime": stamp,
            "renewTime": stamp,
        }
        meta: Obj = {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "selfheal"},
        }
        try:
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": meta,
                    "spec": spec,
                }
                self.api.call(
                    f"create lease {namespace}/{name}",
                    self.api.coordination.create_namespaced_lease,
                    namespace,
                    body,
                )
            else:
                meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": meta,
                    "spec": spec,
                }
                self.api.call(
                    f"replace lease {namespace}/{name}",
                    self.api.coordination.replace_namespaced_lease,
                    name,
                    namespace,
                    body,
                )
        except KubeError as err:
            if err.status == 409:  # another worker took it first
                return False
            raise
        return True

    def _free(self, namespace: str, name: str, holder: str) -> None:
        lease = self._read(namespace, name)
        if lease is None or ((lease.get("spec") or {}).get("holderIdentity")) != holder:
            return
        try:
            self.api.call(
                f"delete lease {namespace}/{name}",
                self.api.coordination.delete_namespaced_lease,
                name,
                namespace,
                body={"preconditions": {"resourceVersion": lease["metadata"]["resourceVersion"]}},
            )
        except KubeError as err:
            if err.status not in (404, 409):  # gone, or taken over since: not ours to free
                raise
