"""An Argo CD API test server for the two endpoints selfheal uses, answering as Argo CD's API
server does (github.com/argoproj/argo-cd: server/application/application.go `Get`, `Sync`,
`getAppEnforceRBAC`; util/argo/argo.go `SetAppOperation`; util/rbac `EnforceErr`), with its
grpc-gateway v1 error bodies (`{"error", "code", "message"}`, gRPC code → HTTP status):

- `GET /api/v1/applications/{name}`: the Application (`operation` while a sync is requested,
  `status.sync.revision|revisions|status`, `status.health.status`, `status.reconciledAt`,
  `status.operationState.phase|message|startedAt|finishedAt|syncResult.revision(s)`).
- `POST /api/v1/applications/{name}/sync`: resolves the target branch on the app's git remote and
  sets the operation, clearing `status.operationState` (`SetAppOperation`); 400 (code 9)
  "error setting app operation: another operation is already in progress" while an operation is
  set; 403 (code 7) "cannot sync: blocked by sync window" with `sync_window_blocked`.
- Without a `project` query parameter, an unknown app and an app the token may not `get` are both
  403 (code 7) "permission denied" (Argo CD does not reveal which); with `project`, both are 404
  (code 5) `applications.argoproj.io "<name>" not found`. A token that may `get` but not `sync`
  gets 403 "permission denied: applications, sync, <project>/<name>, sub: …, iat: …".
- 401 (code 16): "no session information" without a token, "invalid session: …" with a bad one.

The application controller is simulated without clocks: it picks a requested operation up on the
next read (phase Running), completes it on the `sync_reads`-th read after that (Succeeded with
`finishedAt`, or Failed with `fail_next_sync`) and clears `operation`; the app's own status (sync
revision, Synced/OutOfSync, health `health_after_sync`) follows when it next reconciles,
`reconcile_reads` reads later (0: at once), setting `reconciledAt`. `sync.status` is OutOfSync
whenever the branch moved past the reconciled revision.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.forges.http import HttpError, Served
from tests.support.forges.remote import GitRemote

_EPOCH = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@dataclass
class Token:
    #: Projects it may act in ("*" for all) and the `applications` actions its role allows.
    projects: set[str]
    actions: set[str]
    subject: str


@dataclass
class App:
    name: str
    project: str
    remote: GitRemote
    branch: str = "main"
    path: str = "."
    revision: str = ""
    health: str = "Healthy"
    #: Other sources of a multi-source app (their revisions, e.g. a Helm chart version): the app
    #: then reports `sync.revisions` (the git source first) instead of `sync.revision`.
    other_sources: tuple[str, ...] = ()
    #: The top-level `operation`: a sync requested and not finished.
    operation: dict[str, Any] | None = None
    phase: str = ""
    message: str = ""
    operation_revision: str = ""
    started_at: str = ""
    finished_at: str = ""
    reconciled_at: str = ""
    reads_since_start: int = 0
    #: Health once a sync completes (Healthy, Degraded, Progressing, Missing…).
    health_after_sync: str = "Healthy"
    #: The next operation fails with this message instead of succeeding.
    fail_next_sync: str = ""
    syncs: int = 0
    #: What the next reconcile will report, and after how many more reads.
    pending: tuple[str, str] | None = None
    pending_reads: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _grpc(status: int, code: int, message: str) -> HttpError:
    return HttpError(status, {"error": message, "code": code, "message": message, "details": []})


PERMISSION_DENIED = _grpc(403, 7, "permission denied")


class ArgoCdFake(Served):
    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.apps: dict[str, App] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        #: An operation completes on this many reads after the controller picked it up.
        self.sync_reads = 1
        #: The app reconciles (its sync and health status catch up) this many reads after that.
        self.reconcile_reads = 0
        #: A sync window denies syncs now.
        self.sync_window_blocked = False
        self.requests: list[tuple[str, str]] = []
        self._ticks = 0

    @property
    def url(self) -> str:
        return self.root

    def add_token(
        self, token: str, projects: set[str] | None = None, *, actions: set[str] | None = None
    ) -> None:
        """A project role token (or an admin's, with all projects) allowed `actions` on apps."""
        self.tokens[token] = Token(
            projects or {"*"}, actions or {"get", "sync"}, f"proj:{next(iter(projects or {'*'}))}:selfheal"
        )

    def add_app(self, name: str, remote: Path, *, project: str = "default", **kw: Any) -> App:
        app = App(name=name, project=project, remote=GitRemote(remote), **kw)
        app.revision = app.remote.head(app.branch) or ""
        app.reconciled_at = self._now()
        self.apps[name] = app
        return app

    def wait_for(self, predicate: Any, timeout: float = 60) -> Any:
        with self.changed:
            ok = self.changed.wait_for(predicate, timeout=timeout)
        assert ok, "the Argo CD fake never reached the awaited state"
        return ok

    def _now(self) -> str:
        self._ticks += 1
        return (_EPOCH + timedelta(seconds=self._ticks)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # --- requests ---------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        try:
            auth = headers.get("authorization", "")
            if not auth:
                raise _grpc(401, 16, "no session information")
            token = self.tokens.get(auth.removeprefix("Bearer "))
            if token is None:
                raise _grpc(401, 16, "invalid session: token signature is invalid")
            m = re.fullmatch(r"/api/v1/applications/([^/]+)(/sync)?", url.path)
            if m is None:
                raise _grpc(404, 5, "Not Found")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self.lock:
                self.requests.append((method, url.path))
                sync = bool(m.group(2))
                if (method, sync) not in (("GET", False), ("POST", True)):
                    raise _grpc(405, 12, "Method Not Allowed")
                payload = json.loads(body or b"{}") if sync else {}
                project = query.get("project") or str(payload.get("project") or "")
                namespace = query.get("appNamespace") or str(payload.get("appNamespace") or "")
                name = unquote(m.group(1))
                app = self._enforce_get(token, project, f"{namespace}/{name}" if namespace else name)
                if sync:
                    return 200, self._sync(token, app)
                return 200, self._read(app)
        except HttpError as err:
            return err.status, err.payload

    @staticmethod
    def _may(token: Token, action: str, project: str) -> bool:
        return action in token.actions and ("*" in token.projects or project in token.projects)

    def _enforce_get(self, token: Token, project: str, name: str) -> App:
        """`getAppEnforceRBAC` for `get`: 404 only when the request named a project."""
        not_found = _grpc(404, 5, f'applications.argoproj.io "{name.rpartition("/")[2]}" not found')
        if project and not self._may(token, "get", project):
            raise PERMISSION_DENIED
        app = self.apps.get(name)
        if app is None:
            raise not_found if project else PERMISSION_DENIED
        if not self._may(token, "get", app.project):
            raise not_found if project else PERMISSION_DENIED
        if project and project != app.project:
            raise not_found
        return app

    def _sync(self, token: Token, app: App) -> dict[str, Any]:
        if self.sync_window_blocked:
            raise _grpc(403, 7, "cannot sync: blocked by sync window")
        if not self._may(token, "sync", app.project):
            raise _grpc(
                403,
                7,
                f"permission denied: applications, sync, {app.project}/{app.name.rpartition('/')[2]},"
                f" sub: {token.subject}, iat: 2025-06-01T00:00:00Z",
            )
        target = app.remote.head(app.branch)
        if target is None:
            raise _grpc(400, 9, f"unable to resolve '{app.branch}' to a commit SHA")
        if app.operation is not None:
            raise _grpc(400, 9, "error setting app operation: another operation is already in progress")
        app.operation = {
            "sync": {"revision": target, "syncStrategy": {"hook": {}}},
            "initiatedBy": {"username": token.subject},
        }
        app.phase = app.message = app.operation_revision = app.started_at = app.finished_at = ""
        app.syncs += 1
        self.changed.notify_all()
        return self._json(app)

    def _read(self, app: App) -> dict[str, Any]:
        """One read, and what the application controller did since the last."""
        if app.pending is not None:
            app.pending_reads -= 1
            if app.pending_reads <= 0:
                app.revision, app.health = app.pending
                app.pending, app.reconciled_at = None, self._now()
        if app.operation is not None:
            if app.phase != "Running":
                app.phase, app.message, app.reads_since_start = "Running", "", 0
                app.operation_revision, app.started_at = app.operation["sync"]["revision"], self._now()
            app.reads_since_start += 1
            if app.reads_since_start >= self.sync_reads:
                self._finish(app)
            self.changed.notify_all()
        return self._json(app)

    def _finish(self, app: App) -> None:
        app.operation, app.finished_at = None, self._now()
        if app.fail_next_sync:
            app.phase, app.message, app.fail_next_sync = "Failed", app.fail_next_sync, ""
            app.reconciled_at = self._now()
            return
        app.phase, app.message = "Succeeded", "successfully synced (all tasks run)"
        app.pending, app.pending_reads = (app.operation_revision, app.health_after_sync), self.reconcile_reads
        if self.reconcile_reads <= 0:
            app.revision, app.health = app.pending
            app.pending, app.reconciled_at = None, self._now()

    def _json(self, app: App) -> dict[str, Any]:
        head = app.remote.head(app.branch) or ""
        namespace, _, short = app.name.rpartition("/")
        git_source = {"repoURL": str(app.remote.path), "targetRevision": app.branch, "path": app.path}
        sources = [git_source] + [
            {"repoURL": "https://charts.example.com", "chart": "base", "targetRevision": rev}
            for rev in app.other_sources
        ]
        multi = bool(app.other_sources)
        sync: dict[str, Any] = {"status": "Synced" if head == app.revision else "OutOfSync"}
        if multi:
            sync["revisions"] = [app.revision, *app.other_sources]
            sync["comparedTo"] = {"sources": sources}
        else:
            sync["revision"] = app.revision
            sync["comparedTo"] = {"source": git_source}
        status: dict[str, Any] = {
            "sync": sync,
            "health": {"status": app.health},
            "reconciledAt": app.reconciled_at,
        }
        if app.phase:
            result: dict[str, Any] = (
                {"revisions": [app.operation_revision, *app.other_sources]}
                if multi
                else {"revision": app.operation_revision}
            )
            state: dict[str, Any] = {
                "operation": {"sync": {"revision": app.operation_revision}},
                "phase": app.phase,
                "message": app.message,
                "syncResult": result,
                "startedAt": app.started_at,
            }
            if app.finished_at:
                state["finishedAt"] = app.finished_at
            status["operationState"] = state
        out: dict[str, Any] = {
            "metadata": {"name": short, "namespace": namespace or "argocd"},
            "spec": {
                "project": app.project,
                **({"sources": sources} if multi else {"source": git_source}),
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
            },
            "status": status,
        }
        if app.operation is not None:
            out["operation"] = app.operation
        return out
