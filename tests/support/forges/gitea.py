"""A Gitea / Forgejo API v1 test server for the pull request endpoints selfheal uses (over httpx),
with Gitea's answers (`{"message": …}` bodies):

- 401 without a known `Authorization: token …`; 403 when a read-only token writes; 404 unknown
  repository or pull request;
- `POST /repos/{o}/{r}/pulls`: 409 "pull request already exists for these targets [...]" when the
  head branch has an open pull request into the same base, 404 when the head branch is missing,
  422 when head and base are the same;
- `GET …/pulls?state=all&page=&limit=` (newest first), `GET …/pulls/{n}`, `PATCH …/pulls/{n}`
  (`state`; 201, and 412 on a merged one);
- `POST …/pulls/{n}/merge` (`Do` one of Gitea's merge styles, else 422; `head_commit_id`,
  `merge_when_checks_succeed`), as routers/api/v1/repo/pull.go `MergePullRequest`: 404 when closed,
  405 "PR already merged" (empty message), 405 "User not allowed to merge PR", 405 "Please try
  again later" on a conflict, 201 scheduled while a check is pending (the branch protection check
  is skipped when scheduling, and the head is not kept), 409 "pull request is already scheduled to
  auto merge when checks succeed [pull_id: N]", 405 "Not all required status checks successful"
  without scheduling, 409 "head out of date" when `head_commit_id` is not the head, 200 merged
  (empty body); `DELETE …/pulls/{n}/merge` cancels a scheduled merge (404 when none, 403 for
  another user's), 204;
- `POST …/issues/{n}/labels` by name: names the repository does not have are silently dropped,
  200 with the issue's labels (routers/api/v1/repo/issue_label.go `prepareForReplaceOrAdd`);
  `GET|POST …/issues/{n}/comments`.

A scheduled merge happens, as the user who scheduled it, when `checks_pass` is called: with the
head the branch has then, as Gitea's does.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.forges.http import HttpError, Served
from tests.support.forges.remote import GitRemote


@dataclass
class GiteaPull:
    number: int
    title: str
    body: str
    head: str
    base: str
    user: str
    state: str = "open"
    merged: bool = False
    merged_by: str | None = None
    merge_commit_sha: str | None = None
    merged_head: str | None = None
    scheduled_by: str | None = None
    checks_passed: bool = False
    labels: list[str] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GiteaRepo:
    owner: str
    name: str
    remote: GitRemote
    labels: set[str] = field(default_factory=lambda: {"selfheal"})
    #: A required status check: merges wait for `checks_pass`.
    required_check: bool = False
    pulls: dict[int, GiteaPull] = field(default_factory=dict)


#: `MergePullRequestForm.Do` (services/forms/repo_form.go): `binding:"Required;In(…)"` of these.
MERGE_STYLES = ("merge", "rebase", "rebase-merge", "squash", "fast-forward-only", "manually-merged")


def _error(status: int, message: str) -> HttpError:
    return HttpError(status, {"message": message, "url": "https://gitea.example/api/swagger"})


class GiteaFake(Served):
    def __init__(self) -> None:
        self.tokens: dict[str, tuple[str, bool]] = {}
        #: Users allowed to merge (a protected branch's merge whitelist).
        self.mergers: set[str] = set()
        self.repos: dict[str, GiteaRepo] = {}
        self.lock = threading.RLock()
        self._ids = iter(range(1, 10**6))

    @property
    def url(self) -> str:
        return self.root

    def add_token(self, token: str, login: str, *, write: bool = True, merge: bool | None = None) -> None:
        """A user's token; `merge` (default: `write`) whether they may merge."""
        self.tokens[token] = (login, write)
        if write if merge is None else merge:
            self.mergers.add(login)

    def add_repo(self, full_name: str, remote: Path, **kw: Any) -> GiteaRepo:
        owner, name = full_name.split("/")
        repo = GiteaRepo(owner=owner, name=name, remote=GitRemote(remote), **kw)
        self.repos[full_name] = repo
        return repo

    def checks_pass(self, full_name: str, number: int) -> None:
        with self.lock:
            repo = self.repos[full_name]
            pull = repo.pulls[number]
            pull.checks_passed = True
            if pull.scheduled_by and pull.state == "open":
                self._merge(repo, pull, pull.scheduled_by)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        try:
            token = headers.get("authorization", "").removeprefix("token ")
            if token not in self.tokens:
                raise _error(401, "user does not exist [uid: 0, name: ]")
            user, write = self.tokens[token]
            payload = json.loads(body) if body else {}
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self.lock:
                if method != "GET" and not write:
                    raise _error(
                        403, "token does not have at least one of required scope(s): [write:repository]"
                    )
                return self._route(method, url.path, query, payload, user)
        except HttpError as err:
            return err.status, err.payload

    def _route(self, method: str, path: str, query: dict[str, str], data: Any, user: str) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/v1/repos/([^/]+)/([^/]+)/(pulls|issues)(?:/(\d+))?(/\w+)?", path)
        repo = self.repos.get(f"{m.group(1)}/{m.group(2)}") if m else None
        if m is None or repo is None:
            raise _error(404, "The target couldn't be found.")
        kind, number, sub = m.group(3), m.group(4), m.group(5) or ""
        if kind == "pulls" and number is None:
            if method == "GET":
                return 200, self._list(repo, query)
            if method == "POST":
                return 201, self._create(repo, data, user)
        pull = repo.pulls.get(int(number)) if number else None
        if pull is None:
            raise _error(404, "The target couldn't be found.")
        if kind == "pulls" and sub == "" and method == "GET":
            return 200, self._json(repo, pull)
        if kind == "pulls" and sub == "" and method == "PATCH":
            if pull.merged:
                raise _error(412, "cannot change state of this pull request, it was already merged")
            if data.get("state") in ("open", "closed"):
                pull.state = data["state"]
                pull.scheduled_by = None if pull.state == "closed" else pull.scheduled_by
            return 201, self._json(repo, pull)
        if kind == "pulls" and sub == "/merge" and method == "POST":
            return self._merge_request(repo, pull, data, user)
        if kind == "pulls" and sub == "/merge" and method == "DELETE":
            if pull.scheduled_by is None:
                raise _error(404, "The target couldn't be found.")
            if pull.scheduled_by != user:
                raise _error(403, "user has no permission to cancel the scheduled auto merge")
            pull.scheduled_by = None
            return 204, None
        if kind == "issues" and sub == "/labels" and method == "POST":
            names = data.get("labels") or []
            if not all(isinstance(n, str) for n in names):
                raise _error(400, "a label must be an integer or a string")
            pull.labels += [n for n in names if n in repo.labels and n not in pull.labels]
            return 200, [{"id": sorted(repo.labels).index(n) + 1, "name": n} for n in pull.labels]
        if kind == "issues" and sub == "/comments" and method == "GET":
            return 200, list(pull.comments)
        if kind == "issues" and sub == "/comments" and method == "POST":
            comment = {"id": next(self._ids), "body": str(data.get("body") or ""), "user": {"login": user}}
            pull.comments.append(comment)
            return 201, comment
        raise _error(404, "The target couldn't be found.")

    def _list(self, repo: GiteaRepo, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        page, limit = int(query.get("page", 1)), int(query.get("limit", 30))
        found = [
            self._json(repo, p)
            for p in sorted(repo.pulls.values(), key=lambda p: -p.number)
            if state == "all" or p.state == state
        ]
        return found[(page - 1) * limit : page * limit]

    def _create(self, repo: GiteaRepo, data: dict[str, Any], user: str) -> dict[str, Any]:
        head, base = str(data.get("head") or ""), str(data.get("base") or "")
        if head == base:
            raise _error(422, "Invalid PullRequest: There are no changes between the head and the base")
        if repo.remote.head(head) is None or repo.remote.head(base) is None:
            raise _error(404, "The target couldn't be found.")
        for other in repo.pulls.values():
            if other.head == head and other.base == base and other.state == "open":
                raise _error(
                    409,
                    f"pull request already exists for these targets [id: {other.number}, issue_id:"
                    f" {other.number}, head_repo_id: 1, base_repo_id: 1, head_branch: {head},"
                    f" base_branch: {base}]",
                )
        number = len(repo.pulls) + 1
        pull = GiteaPull(number, str(data.get("title") or ""), str(data.get("body") or ""), head, base, user)
        repo.pulls[number] = pull
        return self._json(repo, pull)

    def _merge_request(
        self, repo: GiteaRepo, pull: GiteaPull, data: dict[str, Any], user: str
    ) -> tuple[int, Any]:
        if data.get("Do") not in MERGE_STYLES:
            raise _error(422, f"Do: must be one of {', '.join(MERGE_STYLES)}")  # a validationError
        if pull.merged:
            raise _error(405, "")
        if pull.state != "open":
            raise _error(404, "The target couldn't be found.")
        if user not in self.mergers:
            raise _error(405, "User not allowed to merge PR")
        head = self._head(repo, pull)
        if not repo.remote.mergeable(pull.base, head):
            raise _error(405, "Please try again later")
        pending = repo.required_check and not pull.checks_passed
        if data.get("merge_when_checks_succeed") and pending:
            if pull.scheduled_by is not None:
                raise _error(
                    409,
                    "pull request is already scheduled to auto merge when checks succeed"
                    f" [pull_id: {pull.number + 100}]",
                )
            pull.scheduled_by = user
            return 201, None
        if pending:
            raise _error(405, "Not all required status checks successful")
        if data.get("head_commit_id") and data["head_commit_id"] != head:
            raise _error(409, "head out of date")
        self._merge(repo, pull, user)
        return 200, None

    def _merge(self, repo: GiteaRepo, pull: GiteaPull, user: str) -> None:
        head = self._head(repo, pull)
        commit = repo.remote.merge(pull.base, head, f"Merge pull request '{pull.title}' (#{pull.number})")
        assert commit is not None
        pull.state, pull.merged, pull.merged_by = "closed", True, user
        pull.merge_commit_sha, pull.merged_head, pull.scheduled_by = commit, head, None

    def _head(self, repo: GiteaRepo, pull: GiteaPull) -> str:
        return pull.merged_head or repo.remote.head(pull.head) or ""

    def _json(self, repo: GiteaRepo, pull: GiteaPull) -> dict[str, Any]:
        head = self._head(repo, pull)
        return {
            "id": pull.number + 100,
            "number": pull.number,
            "title": pull.title,
            "body": pull.body,
            "state": pull.state,
            "user": {"login": pull.user},
            "labels": [{"name": n} for n in pull.labels],
            "html_url": f"https://gitea.example/{repo.owner}/{repo.name}/pulls/{pull.number}",
            "mergeable": pull.state == "open" and repo.remote.mergeable(pull.base, head),
            "merged": pull.merged,
            "merge_commit_sha": pull.merge_commit_sha,
            "merged_by": {"login": pull.merged_by} if pull.merged_by else None,
            "head": {"ref": pull.head, "sha": head, "label": pull.head},
            "base": {"ref": pull.base, "sha": repo.remote.head(pull.base) or "", "label": pull.base},
        }
