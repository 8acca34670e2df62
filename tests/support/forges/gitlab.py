"""A GitLab REST v4 test server for the merge request endpoints selfheal uses (through the real
python-gitlab), answering with GitLab's documented shapes and refusals:

- 401 `{"message": "401 Unauthorized"}` without a known `PRIVATE-TOKEN`; 403 `403 Forbidden` when a
  read-only (Reporter) token writes; 404 `404 Project Not Found` / `404 Not found`; and 401 (not
  403) from `…/merge` and `…/cancel_merge_when_pipeline_succeeds` when the user may not merge into
  the target branch (lib/api/merge_requests.rb: `unauthorized! unless can_be_merged_by?`);
- `POST /projects/:id/merge_requests`: 409 `["Another open merge request already exists for this
  source branch: !N"]`; a missing source branch is refused;
- `GET /projects/:id/merge_requests?source_branch=&state=all`, `GET …/:iid`, `PUT …/:iid`
  (`state_event: close|reopen`, `add_labels`, `labels`, `title`, `description`);
- `PUT …/:iid/merge` as lib/api/merge_requests.rb (GitLab 13-17): 405 `405 Method Not Allowed`
  when it is neither mergeable now nor automatically (closed, merged, a conflict — gitlab#364102 —,
  a pipeline still running without `merge_when_pipeline_succeeds`, and `merge_when_pipeline_succeeds`
  without a running pipeline — gitlab#217710, #355455), then 409 `SHA does not match HEAD of source
  branch: <sha>` when `sha` is not the head; with `merge_when_pipeline_succeeds` and a pipeline
  running it is set and the merge happens when the pipeline passes (`pipeline_succeeds`), with a
  passed pipeline it merges at once;
- `POST …/:iid/cancel_merge_when_pipeline_succeeds`: 405 when closed or merged, 406 when it was not
  set (the documented answers); `GET|POST …/:iid/notes`.

The project id is its numeric id or its URL-encoded path (`group%2Fproject`), as in the API.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.forges.http import HttpError, Served
from tests.support.forges.remote import GitRemote


@dataclass
class MergeRequest:
    iid: int
    title: str
    description: str
    source_branch: str
    target_branch: str
    author: str
    state: str = "opened"
    labels: list[str] = field(default_factory=list)
    merged_by: str | None = None
    closed_by: str | None = None
    merge_commit_sha: str | None = None
    merged_head: str | None = None
    merge_when_pipeline_succeeds: bool = False
    mwps_by: str | None = None
    pipeline: str | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Project:
    id: int
    path: str
    remote: GitRemote
    mrs: dict[int, MergeRequest] = field(default_factory=dict)
    #: A pipeline runs on every new merge request until `pipeline_succeeds`.
    pipelines: bool = False
    #: The project's "Pipelines must succeed": no merge without a passed pipeline.
    pipeline_must_succeed: bool = False


class GitlabFake(Served):
    def __init__(self) -> None:
        self.tokens: dict[str, tuple[str, bool]] = {}
        #: Users allowed to merge into the target branches (a protected branch's "Allowed to merge").
        self.mergers: set[str] = set()
        self.projects: dict[str, Project] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self._ids = itertools.count(1)
        self._note_ids = itertools.count(500)
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return self.root

    def add_token(self, token: str, username: str, *, write: bool = True, merge: bool | None = None) -> None:
        """A user's token; `merge` (default: `write`) whether they may merge."""
        self.tokens[token] = (username, write)
        if write if merge is None else merge:
            self.mergers.add(username)

    def add_project(self, path: str, remote: Path, **kw: Any) -> Project:
        project = Project(id=len(self.projects) + 42, path=path, remote=GitRemote(remote), **kw)
        self.projects[path] = project
        return project

    def pipeline_starts(self, path: str, iid: int) -> None:
        """A pipeline for the request's head starts (GitLab creates it shortly after the push)."""
        with self.lock:
            self.projects[path].mrs[iid].pipeline = "running"
            self.changed.notify_all()

    def pipeline_succeeds(self, path: str, iid: int) -> None:
        with self.lock:
            project = self.projects[path]
            mr = project.mrs[iid]
            mr.pipeline = "success"
            if mr.merge_when_pipeline_succeeds and mr.state == "opened":
                self._do_merge(project, mr, mr.mwps_by or mr.author)

    def wait_for(self, predicate: Any, timeout: float = 60) -> Any:
        with self.changed:
            ok = self.changed.wait_for(predicate, timeout=timeout)
        assert ok, "the GitLab fake never reached the awaited state"
        return ok

    # --- dispatch --------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        try:
            token = headers.get("private-token") or headers.get("authorization", "").removeprefix("Bearer ")
            if token not in self.tokens:
                return 401, {"message": "401 Unauthorized"}
            user, write = self.tokens[token]
            ctype = headers.get("content-type", "")
            payload: Any = {}
            if body and "json" in ctype:
                payload = json.loads(body)
            elif body:
                payload = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self.lock:
                self.requests.append((method, url.path))
                merging = re.search(r"/(merge|cancel_merge_when_pipeline_succeeds)$", url.path)
                if method != "GET" and not write and merging is None:
                    raise HttpError(403, {"message": "403 Forbidden"})
                return self._route(method, url.path, query, {**query, **(payload or {})}, user)
        except HttpError as err:
            return err.status, err.payload

    def _project(self, ident: str) -> Project:
        ident = unquote(ident)
        for project in self.projects.values():
            if ident in (project.path, str(project.id)):
                return project
        raise HttpError(404, {"message": "404 Project Not Found"})

    def _route(
        self, method: str, path: str, query: dict[str, str], data: dict[str, Any], user: str
    ) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests(?:/(\d+))?(/\w+)?", path)
        if m is None:
            raise HttpError(404, {"error": "404 Not Found"})
        project = self._project(m.group(1))
        if m.group(2) is None:
            if method == "GET":
                return 200, self._list(project, query)
            if method == "POST":
                return 201, self._create(project, data, user)
            raise HttpError(405, {"message": "405 Method Not Allowed"})
        mr = project.mrs.get(int(m.group(2)))
        if mr is None:
            raise HttpError(404, {"message": "404 Not found"})
        sub = m.group(3) or ""
        if sub == "" and method == "GET":
            return 200, self._json(project, mr)
        if sub == "" and method == "PUT":
            return 200, self._update(project, mr, data, user)
        if sub == "/merge" and method == "PUT":
            return 200, self._merge(project, mr, data, user)
        if sub == "/cancel_merge_when_pipeline_succeeds" and method == "POST":
            if user not in self.mergers:
                raise HttpError(401, {"message": "401 Unauthorized"})
            if mr.state != "opened":
                raise HttpError(405, {"message": "405 Method Not Allowed"})
            if not mr.merge_when_pipeline_succeeds:
                raise HttpError(406, {"message": "Can't cancel the automatic merge"})
            mr.merge_when_pipeline_succeeds, mr.mwps_by = False, None
            return 201, self._json(project, mr)
        if sub == "/notes" and method == "GET":
            notes = sorted(mr.notes, key=lambda n: n["id"], reverse=query.get("sort", "desc") == "desc")
            return 200, notes
        if sub == "/notes" and method == "POST":
            text = data.get("body")
            if not isinstance(text, str) or not text:
                raise HttpError(400, {"message": "400 Bad request - body is missing"})
            note = {"id": next(self._note_ids), "body": text, "author": {"username": user}, "system": False}
            mr.notes.append(note)
            return 201, note
        raise HttpError(404, {"error": "404 Not Found"})

    def _list(self, project: Project, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "all")
        out = []
        for mr in sorted(project.mrs.values(), key=lambda x: -x.iid):
            if state != "all" and mr.state != state:
                continue
            if "source_branch" in query and mr.source_branch != query["source_branch"]:
                continue
            out.append(self._json(project, mr))
        return out

    def _create(self, project: Project, data: dict[str, Any], user: str) -> dict[str, Any]:
        for key in ("source_branch", "target_branch", "title"):
            if not data.get(key):
                raise HttpError(400, {"error": f"{key} is missing"})
        source, target = str(data["source_branch"]), str(data["target_branch"])
        if project.remote.head(source) is None:
            raise HttpError(422, {"message": [f'Source branch "{source}" does not exist']})
        if project.remote.head(target) is None:
            raise HttpError(422, {"message": [f'Target branch "{target}" does not exist']})
        for other in project.mrs.values():
            if other.source_branch == source and other.state == "opened":
                raise HttpError(
                    409,
                    {
                        "message": [
                            f"Another open merge request already exists for this source branch: !{other.iid}"
                        ]
                    },
                )
        labels = data.get("labels") or ""
        iid = len(project.mrs) + 1
        mr = MergeRequest(
            iid=iid,
            title=str(data["title"]),
            description=str(data.get("description") or ""),
            source_branch=source,
            target_branch=target,
            author=user,
            labels=[x for x in (labels.split(",") if isinstance(labels, str) else labels) if x],
            pipeline="running" if project.pipelines else None,
        )
        project.mrs[iid] = mr
        self.changed.notify_all()
        return self._json(project, mr)

    def _update(self, project: Project, mr: MergeRequest, data: dict[str, Any], user: str) -> dict[str, Any]:
        event = data.get("state_event")
        if event == "close" and mr.state == "opened":
            mr.state, mr.closed_by, mr.merge_when_pipeline_succeeds = "closed", user, False
        elif event == "reopen" and mr.state == "closed":
            mr.state, mr.closed_by = "opened", None
        for key in ("add_labels", "labels"):
            raw = data.get(key)
            if isinstance(raw, str):
                names = [x for x in raw.split(",") if x]
                mr.labels = names if key == "labels" else mr.labels + [x for x in names if x not in mr.labels]
        for key in ("title", "description"):
            if isinstance(data.get(key), str):
                setattr(mr, key, data[key])
        self.changed.notify_all()
        return self._json(project, mr)

    def _merge(self, project: Project, mr: MergeRequest, data: dict[str, Any], user: str) -> dict[str, Any]:
        if user not in self.mergers:
            raise HttpError(401, {"message": "401 Unauthorized"})
        head = self._head(project, mr)
        mwps = data.get("merge_when_pipeline_succeeds") in (True, "true")
        can = mr.state == "opened" and project.remote.mergeable(mr.target_branch, head)
        passed = mr.pipeline == "success"
        held_by_ci = mr.pipeline == "running" or (project.pipeline_must_succeed and not passed)
        automatically = can and mwps and mr.pipeline == "running"
        immediately = can and (passed if mwps else not held_by_ci)
        if not automatically and not immediately:
            raise HttpError(405, {"message": "405 Method Not Allowed"})
        sha = data.get("sha")
        if sha and sha != head:
            raise HttpError(409, {"message": f"SHA does not match HEAD of source branch: {head}"})
        if immediately:
            self._do_merge(project, mr, user)
        else:
            mr.merge_when_pipeline_succeeds, mr.mwps_by = True, user
        return self._json(project, mr)

    def _do_merge(self, project: Project, mr: MergeRequest, user: str) -> None:
        head = self._head(project, mr)
        message = (
            f"Merge branch '{mr.source_branch}' into '{mr.target_branch}'\n\n{mr.title}\n\n"
            f"See merge request !{mr.iid}"
        )
        commit = project.remote.merge(mr.target_branch, head, message)
        assert commit is not None
        mr.state, mr.merged_by, mr.merge_commit_sha, mr.merged_head = "merged", user, commit, head
        mr.merge_when_pipeline_succeeds = False
        self.changed.notify_all()

    def _head(self, project: Project, mr: MergeRequest) -> str:
        return mr.merged_head or project.remote.head(mr.source_branch) or ""

    def _json(self, project: Project, mr: MergeRequest) -> dict[str, Any]:
        head = self._head(project, mr)
        if mr.state != "opened":
            status = "not_open"
        elif not project.remote.mergeable(mr.target_branch, head):
            status = "conflict"
        elif mr.pipeline == "running":
            status = "ci_still_running"
        elif project.pipeline_must_succeed and mr.pipeline != "success":
            status = "ci_must_pass"
        else:
            status = "mergeable"
        return {
            "id": mr.iid + 1000,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "description": mr.description,
            "state": mr.state,
            "source_branch": mr.source_branch,
            "target_branch": mr.target_branch,
            "author": {"username": mr.author},
            "labels": list(mr.labels),
            "sha": head,
            "merge_commit_sha": mr.merge_commit_sha,
            "squash_commit_sha": None,
            "merged_by": {"username": mr.merged_by} if mr.merged_by else None,
            "merge_user": {"username": mr.merged_by} if mr.merged_by else None,
            "closed_by": {"username": mr.closed_by} if mr.closed_by else None,
            "merge_when_pipeline_succeeds": mr.merge_when_pipeline_succeeds,
            "detailed_merge_status": status,
            "head_pipeline": {"status": mr.pipeline} if mr.pipeline else None,
            "web_url": f"https://gitlab.example/{project.path}/-/merge_requests/{mr.iid}",
        }
