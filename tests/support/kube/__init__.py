"""An in-memory Kubernetes API server on a real socket, for tests that drive the real `kubernetes`
client (never a mock of it): the endpoints the kube verbs use, answering as the API server does.

It rejects what the API server rejects, with its `Status` bodies: 404 NotFound, 409 AlreadyExists on
create, 409 Conflict on a write carrying a stale `metadata.resourceVersion` (or a delete whose
precondition is stale), 422 Invalid (negative replicas, a shrinking PVC, a Job without a template,
an unknown `dryRun` value: the real server validates CreateOptions/PatchOptions/DeleteOptions and
answers 422, not 400), 403 when a PVC grows on a StorageClass without `allowVolumeExpansion` (the
PersistentVolumeClaimResize admission plugin), 429 from the eviction subresource when a
PodDisruptionBudget allows no disruption (or its status lags its spec), 400 for an unknown field
selector or a Lease time that is not a MicroTime, 401 without the bearer token. `dryRun=All` runs
every check and persists nothing. `resourceVersion` increments on every write (one counter, as
etcd's revision), `generation` when the spec changes. A running pod that is deleted or evicted
stays, terminating (`deletionTimestamp`), until `finish_terminations` (its kubelet); an
unscheduled or finished one goes at once. Events come in both recorded shapes (`objects.event`,
core/v1 `lastTimestamp`/`count`; `objects.series_event`, events.k8s.io/v1 `eventTime`/`series`).

Controllers are not simulated: `complete_rollout`, `stall_rollout` and `rollouts_complete_after`
set a workload's status as its controller would, so `kube_wait` is testable without sleeping.
`requests` logs every call as RBAC sees it (apiGroup, resource, verb).

Flux's Kustomization (`kustomize.toolkit.fluxcd.io/v1`) and HelmRelease (`helm.toolkit.fluxcd.io/v2`)
are served as custom resources (merge and JSON patches only: 415 for a strategic merge patch, as
for any CRD); with `flux_source` set, a resource whose `reconcile.fluxcd.io/requestedAt` changed is
reconciled by its controller to that revision over `flux_reads` reads, Ready=Unknown/Progressing
meanwhile (or fails with `flux_failure`, Stalled with `flux_stalled`). A HelmRelease reports
what runs as helm-controller v2 does: `status.history`, chart version `0.1.0+<12 hex>`.

Usage::

    with KubeFake() as fake:
        fake.add(objects.deployment("shop", "cart"))
        settings = KubeSettings(kubeconfig=fake.kubeconfig(tmp_path), namespaces=["shop"])
"""

from tests.support.kube import objects
from tests.support.kube.cluster import actions_for, kube_settings
from tests.support.kube.fake import KubeFake, RbacCall

__all__ = ["KubeFake", "RbacCall", "actions_for", "kube_settings", "objects"]
