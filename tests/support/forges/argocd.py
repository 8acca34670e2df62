"""An Argo CD API test server for the two endpoints selfheal uses, with Argo CD's grpc-gateway
error bodies (`{"error", "code", "message"}`):

- `GET /api/v1/applications/{name}`: the Application (`status.sync.revision|status`,
  `status.health.status`, `status.operationState.phase|message|syncResult.revision`); 404 (code 5)
  for an unknown app, 403 `permission denied` (code 7) for an app outside the token's project;
- `POST /api/v1/applications/{name}/sync`: resolves the app's target branch on its git remote and
  starts an operation; 400 (code 9) "another operation is already in progress" while one runs.
- 401 (code 16) without a valid bearer token.

The controller is simulated without clocks: an operation completes on the `sync_reads`-th read
after it started (Succeeded, Synced at the revision, health `health_after_sync`), or fails with
`fail_next_sync`. `sync.status` is OutOfSync whenever the branch moved past the synced revision.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.forges.http import HttpError, Served
from tests.support.forges.remote import GitRemote


@dataclass
class App:
    name: str
    project: str
    remote: GitRemote
    branch: str = "main"
    path: str = "."
    revision: str = ""
    health: str = "Healthy"
    phase: str = ""
    message: str = ""
    operation_revision: str = ""
    reads_since_start: int = 0
    #: Health once a sync completes (Healthy, Degraded, Progressing…).
    health_after_sync: str = "Healthy"
    #: The next operation fails with this message instead of succeeding.
    fail_next_sync: str = ""
    syncs: int = 0


def _grpc(status: int, code: int, message: str) -> HttpError:
    return HttpError(status, {"error": message, "code": code, "message": message})


class ArgoCdFake(Served):
    def __init__(self) -> None:
        #: token → the projects it may act in ("*" for all).
        self.tokens: dict[str, set[str]] = {}
        self.apps: dict[str, App] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        #: An operation completes on this many reads after it started.
        self.sync_reads = 1
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return self.root

    def add_token(self, token: str, projects: set[str] | None = None) -> None:
        self.tokens[token] = projects or {"*"}

    def add_app(self, name: str, remote: Path, *, project: str = "default", **kw: Any) -> App:
        app = App(name=name, project=project, remote=GitRemote(remote), **kw)
        app.revision = app.remote.head(app.branch) or ""
        self.apps[name] = app
        return app

    def wait_for(self, predicate: Any, timeout: float = 60) -> Any:
        with self.changed:
            ok = self.changed.wait_for(predicate, timeout=timeout)
        assert ok, "the Argo CD fake never reached the awaited state"
        return ok

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        try:
            token = headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.tokens:
                raise _grpc(401, 16, "invalid session: token signature is invalid")
            m = re.fullmatch(r"/api/v1/applications/([^/]+)(/sync)?", url.path)
            if m is None:
                raise _grpc(404, 5, "Not Found")
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            name = unquote(m.group(1))
            if "appNamespace" in query:
                name = f"{query['appNamespace']}/{name}"
            with self.lock:
                self.requests.append((method, url.path))
                app = self.apps.get(name)
                allowed = self.tokens[token]
                if app is not None and "*" not in allowed and app.project not in allowed:
                    raise _grpc(403, 7, "permission denied")
                if app is None:
                    raise _grpc(404, 5, f'applications.argoproj.io "{name}" not found')
                if m.group(2) and method == "POST":
                    json.loads(body or b"{}")
                    return 200, self._sync(app)
                if not m.group(2) and method == "GET":
                    return 200, self._read(app)
                raise _grpc(405, 12, "Method Not Allowed")
        except HttpError as err:
            return err.status, err.payload

    def _sync(self, app: App) -> dict[str, Any]:
        if app.phase in ("Running", "Terminating"):
            raise _grpc(400, 9, "another operation is already in progress")
        target = app.remote.head(app.branch)
        if target is None:
            raise _grpc(400, 3, f"unable to resolve '{app.branch}' to a commit SHA")
        app.phase, app.message, app.operation_revision, app.reads_since_start = "Running", "", target, 0
        app.syncs += 1
        self.changed.notify_all()
        return self._json(app)

    def _read(self, app: App) -> dict[str, Any]:
        if app.phase == "Running":
            app.reads_since_start += 1
            if app.reads_since_start >= self.sync_reads:
                if app.fail_next_sync:
                    app.phase, app.message, app.fail_next_sync = "Failed", app.fail_next_sync, ""
                else:
                    app.phase, app.message = "Succeeded", "successfully synced (all tasks run)"
                    app.revision, app.health = app.operation_revision, app.health_after_sync
                self.changed.notify_all()
        return self._json(app)

    def _json(self, app: App) -> dict[str, Any]:
        head = app.remote.head(app.branch) or ""
        sync = "Synced" if head == app.revision else "OutOfSync"
        operation: dict[str, Any] = {}
        if app.phase:
            operation = {
                "phase": app.phase,
                "message": app.message,
                "syncResult": {"revision": app.operation_revision},
                "operation": {"sync": {"revision": app.operation_revision}},
            }
        namespace, _, short = app.name.rpartition("/")
        return {
            "metadata": {"name": short, "namespace": namespace or "argocd"},
            "spec": {
                "project": app.project,
                "source": {"repoURL": str(app.remote.path), "targetRevision": app.branch, "path": app.path},
                "destination": {"server": "https://kubernetes.default.svc", "namespace": "default"},
            },
            "status": {
                "sync": {
                    "status": sync,
                    "revision": app.revision,
                    "comparedTo": {"source": {"targetRevision": app.branch}},
                },
                "health": {"status": app.health},
                **({"operationState": operation} if operation else {}),
            },
        }
