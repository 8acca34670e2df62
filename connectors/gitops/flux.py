"""Flux: ask a Kustomization or HelmRelease to reconcile now, and read what it applied.

The request is Flux's own: set the `reconcile.fluxcd.io/requestedAt` annotation (what `flux
reconcile` does); the controller answers by copying it to `status.lastHandledReconcileAt` when
that reconciliation ends. Applied means the `Ready` condition is True for the current generation
and the applied revision names the commit:

- Kustomization (kustomize-controller api/v1): `status.lastAppliedRevision`, `main@sha1:<sha>`
  (`main/<sha>` before Flux 2.1); `status.lastAttemptedRevision` is what the last try applied.
- HelmRelease (helm-controller api/v2, which has no `lastAppliedRevision`): the chart version of
  the newest `deployed` release in `status.history`; a chart built from a GitRepository with
  `reconcileStrategy: Revision` carries the commit as SemVer build metadata, `0.1.0+<first 12 hex
  of the commit>[.<generation>]` (source-controller internal/controller/helmchart_controller.go).
  `status.lastAttemptedRevision` is the chart version last tried.

A reconciliation of the awaited revision that failed (`Ready` False after our request was
handled, the attempted revision at it) or a `Stalled` resource is final. Through the official
client's CustomObjectsApi, on the worker's `kube:` connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from connectors.kube.api import KubeApi, refused

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
#: Custom resources take JSON merge patches (no strategic merge: their schema has no patch keys).
MERGE_PATCH = "application/merge-patch+json"
#: (group, version, plural) per kind.
KINDS = {
    "Kustomization": ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations"),
    "HelmRelease": ("helm.toolkit.fluxcd.io", "v2", "helmreleases"),
}
_SHA = re.compile(r"(?:sha1:|^)([0-9a-f]{40})$")


_CHART_COMMIT = re.compile(r"[0-9a-f]{12,40}")


def revision_sha(revision: str) -> str:
    """The commit in a Flux revision (`main@sha1:<sha>`, `main/<sha>` or `<sha>`); '' if none."""
    tail = revision.rsplit("/", 1)[-1]
    m = _SHA.search(tail) or _SHA.search(revision.rsplit("@", 1)[-1])
    return m.group(1) if m else ""


def chart_commit(version: str) -> str:
    """The commit (abbreviated, 12 hex) in a chart version built from git, `0.1.0+<sha>[.<gen>]`;
    '' for a chart version without one (a chart from a Helm repository, or `ChartVersion`)."""
    _, plus, metadata = version.partition("+")
    first = metadata.split(".", 1)[0]
    return first if plus and _CHART_COMMIT.fullmatch(first) else ""


def _deployed_chart(status: dict[str, Any]) -> str:
    """The chart version of the newest release in `status.history` that is `deployed`."""
    history = [h for h in status.get("history") or [] if isinstance(h, dict)]
    deployed = [h for h in history if h.get("status") == "deployed"]
    newest = max(deployed, key=lambda h: int(h.get("version") or 0), default={})
    return str(newest.get("chartVersion") or "")


@dataclass(frozen=True)
class FluxStatus:
    ready: str
    reason: str
    message: str
    #: What it applied and last tried, as Flux writes them (a source revision, or a chart version),
    #: and the commit in each ('' when it names none).
    applied: str
    handled: str
    requested: str
    generation: int
    observed_generation: int
    applied_commit: str = ""
    attempted: str = ""
    attempted_commit: str = ""
    #: The `Stalled` condition's message when True: Flux will not retry without a change.
    stalled: str = ""

    @property
    def handled_request(self) -> bool:
        return bool(self.requested) and self.handled == self.requested

    def describe(self) -> str:
        applied = self.applied_commit[:12] or self.applied or "none"
        why = f" ({self.reason}: {self.message[:200]})" if self.reason and self.ready != "True" else ""
        stalled = f", Stalled: {self.stalled[:200]}" if self.stalled else ""
        return f"applied {applied}, Ready={self.ready or 'Unknown'}{why}{stalled}"


class Flux:
    """Flux resources in the namespaces `kube.namespaces` allows, as for every kube step."""

    def __init__(self, api: KubeApi, namespaces: list[str]) -> None:
        self.api = api
        self.namespaces = namespaces
        self.custom = client.CustomObjectsApi(api.api_client)

    def request_reconcile(self, kind: str, namespace: str, name: str, stamp: str) -> None:
        """Annotate with `stamp` (the same stamp again is a no-op, so a retry asks once)."""
        if namespace not in self.namespaces:
            allowed = ", ".join(self.namespaces) or "none"
            raise refused(f"namespace {namespace!r} is not in kube.namespaces (allowed: {allowed})")
        group, version, plural = KINDS[kind]
        body = {"metadata": {"annotations": {REQUESTED_AT: stamp}}}
        self.api.call(
            f"annotate {kind} {namespace}/{name}",
            self.custom.patch_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
            body,
            _content_type=MERGE_PATCH,
        )

    def status(self, kind: str, namespace: str, name: str) -> FluxStatus:
        group, version, plural = KINDS[kind]
        obj = self.api.call(
            f"get {kind} {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            group,
            version,
            namespace,
            plural,
            name,
        )
        meta: dict[str, Any] = obj.get("metadata") or {}
        status: dict[str, Any] = obj.get("status") or {}
        conditions = {str(c.get("type")): c for c in status.get("conditions") or [] if isinstance(c, dict)}
        ready, stalled = conditions.get("Ready", {}), conditions.get("Stalled", {})
        attempted = str(status.get("lastAttemptedRevision") or "")
        if kind == "HelmRelease":
            applied = _deployed_chart(status)
            applied_commit, attempted_commit = chart_commit(applied), chart_commit(attempted)
        else:
            applied = str(status.get("lastAppliedRevision") or "")
            applied_commit, attempted_commit = revision_sha(applied), revision_sha(attempted)
        return FluxStatus(
            ready=str(ready.get("status") or ""),
            reason=str(ready.get("reason") or ""),
            message=str(ready.get("message") or ""),
            applied=applied,
            handled=str(status.get("lastHandledReconcileAt") or ""),
            requested=str((meta.get("annotations") or {}).get(REQUESTED_AT) or ""),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            applied_commit=applied_commit,
            attempted=attempted,
            attempted_commit=attempted_commit,
            stalled=str(stalled.get("message") or "Stalled") if stalled.get("status") == "True" else "",
        )
