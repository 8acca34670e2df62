"""Argo CD: ask an application to sync, and read what it runs (its REST API, with httpx).

`POST /api/v1/applications/{name}/sync` starts a sync of the app's target revision; Argo CD
answers 400 "another operation is already in progress" when one runs (an auto-sync, say), which
is fine: the wait then watches that one. `GET /api/v1/applications/{name}` gives
`status.sync.revision` (the commit it runs; `status.sync.revisions` for a multi-source app),
`status.sync.status` (Synced/OutOfSync), `status.health.status` and `status.operationState` (the
last sync's phase, message and finish time). A sync is still in progress while the top-level
`operation` is set (Argo CD's `SetAppOperation` sets it and clears `status.operationState`), while
the operation has not finished, and until the app was reconciled after it finished
(`status.reconciledAt`): what `argocd app wait` waits for (cmd/argocd/commands/app.go).

Without a `project` in the request, Argo CD answers 403 "permission denied" both for an app the
token may not see and for one that does not exist (server/application/application.go
`getAppEnforceRBAC`), so a 403 names both causes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from connectors.gitops.forge import ForgeError, http_error
from connectors.gitops.settings import ArgoCdSettings, secret


class ArgoError(ForgeError):
    """Argo CD refused or failed a call."""


def _stamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value if v) if isinstance(value, list) else ()


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
    #: A multi-source app's revisions (one per source), as it runs them and as its last sync did.
    revisions: tuple[str, ...] = ()
    operation_revisions: tuple[str, ...] = ()
    #: A sync was requested (top-level `operation`) and the controller has not finished it.
    operation_requested: bool = False
    finished_at: datetime | None = None
    reconciled_at: datetime | None = None

    @property
    def running(self) -> tuple[str, ...]:
        """The revisions it runs: the one of a single-source app, or each source's."""
        return tuple(r for r in (self.revision, *self.revisions) if r)

    @property
    def tried(self) -> tuple[str, ...]:
        """The revisions its last sync operation applied."""
        return tuple(r for r in (self.operation_revision, *self.operation_revisions) if r)

    @property
    def settled(self) -> bool:
        """No sync in progress and the app reconciled since the last one finished, so its sync and
        health status describe what that sync left (`argocd app wait`'s "operation in progress")."""
        if self.operation_requested or self.phase in ("Running", "Terminating"):
            return False
        if self.phase and self.finished_at is None:
            return False
        if self.finished_at is not None:
            return self.reconciled_at is not None and self.reconciled_at >= self.finished_at
        return True

    def describe(self) -> str:
        rev = ",".join(r[:12] for r in self.running) or "none"
        op = f", last sync {self.phase}" if self.phase else ""
        if self.operation_requested and self.phase not in ("Running", "Terminating"):
            op += ", sync requested"
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
            elif resp.status_code == 403 and "sync window" in message:
                raise ArgoError(
                    f"argocd {what}: {message} (an Argo CD sync window)", retryable=False, status=403
                )
            elif resp.status_code == 403:
                raise ArgoError(
                    f"argocd {what}: 403 {message} (the application does not exist, or the token's"
                    " project role lacks this action: see docs/gitops.md)",
                    retryable=False,
                    status=403,
                )
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
            revisions=_strings(sync.get("revisions")),
            operation_revisions=_strings(result.get("revisions")),
            operation_requested=bool(body.get("operation")),
            finished_at=_stamp(op.get("finishedAt")),
            reconciled_at=_stamp(status.get("reconciledAt")),
        )

    def close(self) -> None:
        self._http.close()
