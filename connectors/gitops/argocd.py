"""Argo CD: ask an application to sync, and read what it runs (its REST API, with httpx).

`POST /api/v1/applications/{name}/sync` starts a sync of the app's target revision; Argo CD
answers 400 "another operation is already in progress" when one runs (an auto-sync, say), which
is fine: the wait then watches that one. `GET /api/v1/applications/{name}` gives
`status.sync.revision` (the commit it runs), `status.sync.status` (Synced/OutOfSync),
`status.health.status` and `status.operationState` (the last sync's phase and message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from connectors.gitops.forge import ForgeError, http_error
from connectors.gitops.settings import ArgoCdSettings, secret


class ArgoError(ForgeError):
    """Argo CD refused or failed a call."""


@dataclass(frozen=True)
class ArgoApp:
    name: str
    revision: str
    sync_status: str
    health: str
    #: The last operation: phase (Running, Succeeded, Failed, Error, Terminating), its message and
    #: the revision it synced.
    phase: str
    message: str
    operation_revision: str

    def describe(self) -> str:
        rev = self.revision[:12] or "none"
        op = f", last sync {self.phase}" if self.phase else ""
        why = f": {self.message[:200]}" if self.message and self.phase in ("Failed", "Error") else ""
        return f"revision {rev}, {self.sync_status or 'Unknown'}, {self.health or 'Unknown'}{op}{why}"


def _path(app: str) -> tuple[str, dict[str, str]]:
    """`ns/name` (apps in any namespace) → the name in the path and `appNamespace` in the query."""
    namespace, _, name = app.rpartition("/")
    return quote(name, safe=""), ({"appNamespace": namespace} if namespace else {})


class ArgoCd:
    def __init__(self, settings: ArgoCdSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._http = httpx.Client(
            base_url=settings.url,
            headers={"Authorization": f"Bearer {secret(settings.token, 'gitops.argocd.token')}"},
            timeout=settings.request_timeout_seconds,
            verify=settings.verify_tls,
            transport=transport,
        )

    def _send(self, what: str, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ArgoError(
                f"argocd {what}: cannot reach {self.settings.url}: {exc}", retryable=True
            ) from exc
        try:
            body = resp.json() if resp.content else {}
        except ValueError:
            body = {}
        if resp.status_code >= 400:
            message = str(body.get("message") or body.get("error") or resp.reason_phrase)
            if resp.status_code == 401:
                message += " (check gitops.argocd.token)"
            err = http_error(f"argocd {what}", resp.status_code, message)
            raise ArgoError(str(err), retryable=err.retryable, status=resp.status_code)
        return resp.status_code, body

    def sync(self, app: str) -> str:
        """Start a sync of the app's target revision; what happened (started, or one already runs)."""
        name, query = _path(app)
        try:
            self._send(f"sync {app}", "POST", f"/api/v1/applications/{name}/sync", params=query, json={})
        except ArgoError as err:
            if err.status == 400 and "another operation is already in progress" in str(err):
                return "a sync was already running"
            raise
        return "sync started"

    def get(self, app: str) -> ArgoApp:
        name, query = _path(app)
        _, body = self._send(f"read {app}", "GET", f"/api/v1/applications/{name}", params=query)
        status = body.get("status") or {}
        sync = status.get("sync") or {}
        op = status.get("operationState") or {}
        result = op.get("syncResult") or {}
        return ArgoApp(
            name=app,
            revision=str(sync.get("revision") or ""),
            sync_status=str(sync.get("status") or ""),
            health=str((status.get("health") or {}).get("status") or ""),
            phase=str(op.get("phase") or ""),
            message=str(op.get("message") or ""),
            operation_revision=str(result.get("revision") or ""),
        )

    def close(self) -> None:
        self._http.close()
