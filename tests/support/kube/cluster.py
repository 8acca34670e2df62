"""The connector as the worker builds it (kubeconfig → ApiClient → KubeActions), pointed at a fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.kube.api import KubeApi, build_api_client
from connectors.kube.settings import KubeSettings
from connectors.kube.verbs import KubeActions
from tests.support.kube.fake import KubeFake


def kube_settings(fake: KubeFake, directory: Path, **overrides: Any) -> KubeSettings:
    """`kube:` settings for the fake: its kubeconfig, namespace `shop` allowed, Leases in `selfheal`."""
    values: dict[str, Any] = {
        "kubeconfig": fake.kubeconfig(directory),
        "namespaces": ["shop"],
        "lease_namespace": "selfheal",
        "poll_seconds": 0.01,
        **overrides,
    }
    return KubeSettings.model_validate(values)


def actions_for(fake: KubeFake, directory: Path, **overrides: Any) -> KubeActions:
    settings = kube_settings(fake, directory, **overrides)
    return KubeActions(KubeApi(build_api_client(settings), timeout=5), settings)
