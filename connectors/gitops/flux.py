"""Flux: ask a Kustomization or HelmRelease to reconcile now, and read what it applied.

The request is Flux's own: set the `reconcile.fluxcd.io/requestedAt` annotation (what `flux
reconcile` does); the controller answers by copying it to `status.lastHandledReconcileAt`. Applied
means the `Ready` condition is True and `status.lastAppliedRevision` (`main@sha1:<sha>`, or a bare
sha before Flux 2.1) names the commit. Through the official client's CustomObjectsApi, on the
worker's `kube:` connection.
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


def revision_sha(revision: str) -> str:
    """The commit in a Flux revision (`main@sha1:<sha>`, `main/<sha>` or `<sha>`); '' if none."""
    tail = revision.rsplit("/", 1)[-1]
    m = _SHA.search(tail) or _SHA.search(revision.rsplit("@", 1)[-1])
    return m.group(1) if m else ""


@dataclass(frozen=True)
class FluxStatus:
    ready: str
    reason: str
    message: str
    applied: str
    handled: str
    requested: str
    generation: int
    observed_generation: int

    @property
    def handled_request(self) -> bool:
        return bool(self.requested) and self.handled == self.requested

    def describe(self) -> str:
        applied = revision_sha(self.applied)[:12] or self.applied or "none"
        why = f" ({self.reason}: {self.message[:200]})" if self.reason and self.ready != "True" else ""
        return f"applied {applied}, Ready={self.ready or 'Unknown'}{why}"


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
        ready = next(
            (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"),
            {},
        )
        return FluxStatus(
            ready=str(ready.get("status") or ""),
            reason=str(ready.get("reason") or ""),
            message=str(ready.get("message") or ""),
            applied=str(status.get("lastAppliedRevision") or ""),
            handled=str(status.get("lastHandledReconcileAt") or ""),
            requested=str((meta.get("annotations") or {}).get(REQUESTED_AT) or ""),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
        )
