"""The `kube:` settings section: which cluster, which namespaces, and how much disruption at once."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from models.settings import Section

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class InFlight(Section):
    """At most this many disruptive verbs (restart, scale-down, delete/evict, drain) at once."""

    cluster: int = Field(default=3, ge=1, le=100)
    namespace: int = Field(default=1, ge=1, le=100)


class KubeSettings(Section):
    #: A kubeconfig file; unset: `$KUBECONFIG` or `~/.kube/config` (ignored with `in_cluster`).
    kubeconfig: Path | None = None
    #: The kubeconfig context; unset: its current context.
    context: str | None = None
    #: Use the pod's service account (the worker runs in the cluster it heals).
    in_cluster: bool = False
    #: The namespaces kube verbs may touch. A literal one outside is a lint error at load; a
    #: rendered one outside is refused at run time. Node verbs (cordon, uncordon, drain) are not
    #: namespaced.
    namespaces: list[str] = Field(default_factory=list)
    max_in_flight: InFlight = Field(default_factory=InFlight)
    #: Where the cluster-wide in-flight slots (Leases) live: the worker's own namespace.
    lease_namespace: str = "selfheal"
    #: How long a disruptive verb holds its slot unless its `kube_wait` succeeds first.
    in_flight_seconds: float = Field(default=900, ge=10)
    #: No evict, delete or scale-down when the workload's ready pods would fall below this share of
    #: its desired replicas (like medik8s' minHealthy).
    min_ready_fraction: float = Field(default=0.5, ge=0, le=1)
    #: No drain when fewer ready, schedulable nodes than this would remain.
    min_ready_nodes: int = Field(default=1, ge=0)
    #: Scale never goes below this many replicas, nor above `max_replicas` (whatever a playbook says).
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=50, ge=1, le=1000)
    #: Per API request.
    request_timeout_seconds: float = Field(default=30, gt=0)
    #: How often `kube_wait` reads the workload's status.
    poll_seconds: float = Field(default=2, gt=0)

    @field_validator("namespaces")
    @classmethod
    def _labels(cls, namespaces: list[str]) -> list[str]:
        for ns in namespaces:
            if len(ns) > 63 or not _DNS_LABEL.fullmatch(ns):
                raise ValueError(f"{ns!r} is not a valid namespace name")
        return namespaces

    @field_validator("lease_namespace")
    @classmethod
    def _lease_label(cls, ns: str) -> str:
        if len(ns) > 63 or not _DNS_LABEL.fullmatch(ns):
            raise ValueError(f"{ns!r} is not a valid namespace name")
        return ns

    @model_validator(mode="after")
    def _bounds(self) -> KubeSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        return self
