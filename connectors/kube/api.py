"""One worker's connection to one cluster: the client built from settings, and its error mapping.

The official client's typed API classes make every request (paths, auth, query parameters); their
answers are read as plain JSON (`_preload_content=False`) so a field this client version does not
model is never lost, and every failure becomes a `KubeError` carrying the API's own `Status`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from connectors.base import ConnectorError
from connectors.kube.settings import KubeSettings

Obj = dict[str, Any]
#: A dry run as the API server knows it: validated and admitted, nothing persisted.
DRY_RUN_ALL = "All"


class KubeError(ConnectorError):
    """A call or a verb failed. `status` and `reason` are the API's (0 and "" when it never answered)."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int = 0,
        reason: str = "",
        causes: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.reason = reason
        #: The `Status` body's `details.causes` messages (e.g. which PodDisruptionBudget blocked).
        self.causes = causes


def refused(message: str) -> KubeError:
    """A verb selfheal will not run as asked (guardrail, allow-list, wrong state): retrying cannot help."""
    return KubeError(message, retryable=False, reason="Refused")


#: The client's loaders, typed for mypy (they write into the Configuration they are given).
_load_incluster: Callable[..., None] = config.load_incluster_config
_load_kubeconfig: Callable[..., None] = config.load_kube_config


def build_api_client(settings: KubeSettings) -> client.ApiClient:
    """In-cluster service account, or a kubeconfig (file and context from settings). The
    configuration is this client's own: nothing is written to the module-global default."""
    cfg = client.Configuration()
    try:
        if settings.in_cluster:
            _load_incluster(client_configuration=cfg)
        else:
            _load_kubeconfig(
                config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
                context=settings.context,
                client_configuration=cfg,
                persist_config=False,
            )
    except (config.ConfigException, OSError) as exc:
        raise KubeError(f"kube: cannot load the cluster configuration: {exc}", retryable=False) from exc
    return client.ApiClient(configuration=cfg)


def _status_error(exc: ApiException, what: str) -> KubeError:
    status = int(exc.status or 0)
    reason, message = str(exc.reason or ""), ""
    causes: tuple[str, ...] = ()
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict) and body.get("kind") == "Status":
            reason = str(body.get("reason") or reason)
            message = str(body.get("message") or "")
            found = (body.get("details") or {}).get("causes") or []
            causes = tuple(str(c["message"]) for c in found if isinstance(c, dict) and c.get("message"))
    except (TypeError, ValueError, AttributeError):
        pass
    retryable = status in (409, 429) or status >= 500
    if status in (401, 403):
        message += " (check the worker's RBAC: deploy/kubernetes/components/kube/rbac.yaml)"
    return KubeError(
        f"{what}: {status} {reason}: {message}".rstrip(": "),
        retryable=retryable,
        status=status,
        reason=reason,
        causes=causes,
    )


class KubeApi:
    """The typed API groups of one `ApiClient`, and `call`, which every request goes through."""

    def __init__(self, api_client: client.ApiClient, *, timeout: float = 30) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.storage = client.StorageV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    def call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        """One request; the answer's JSON, or a KubeError naming `what` (e.g. `get deployment shop/cart`)."""
        try:
            resp = method(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            data = resp.data
        except ApiException as exc:
            raise _status_error(exc, what) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{what}: cannot reach the API server: {exc}", retryable=True) from exc
        try:
            parsed = json.loads(data) if data else {}
        except ValueError as exc:
            raise KubeError(
                f"{what}: the API server answered something other than JSON", retryable=True
            ) from exc
        return parsed if isinstance(parsed, dict) else {}

    def close(self) -> None:
        close: Callable[[], None] = self.api_client.close
        close()
