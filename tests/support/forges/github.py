"""A GitHub REST v3 + GraphQL test server for the pull request endpoints selfheal uses (through the
real PyGithub), answering with GitHub's documented shapes and refusals:

- 401 `Bad credentials` without a known token; 403 `Resource not accessible by personal access
  token` when a read-only token writes; 404 `Not Found` for unknown repositories and pulls;
- `POST /repos/{o}/{r}/pulls`: 422 `Validation Failed` with "A pull request already exists for
  o:branch." when the head branch has an open pull request, "No commits between" when it has
  nothing new, and a `head` `invalid` error when the branch does not exist;
- `GET …/pulls?state=&head=owner:branch` (list shape: no `merged`, `mergeable_state`);
  `GET …/pulls/{n}` (full shape), `PATCH` (close/reopen, title, body);
- `PUT …/pulls/{n}/merge`: 405 "Pull Request is not mergeable" (blocked by a required check,
  conflicting, closed), 409 "Head branch was modified. Review and try the merge again." when `sha`
  is not the head; a real merge commit on the bare remote;
- `POST /repos/{o}/{r}/issues/{n}/labels`, `GET /repos/{o}/{r}/issues/{n}` (`closed_by`),
  `GET|POST …/issues/{n}/comments`;
- `POST /api/graphql` `enablePullRequestAutoMerge` (refused "Pull request Pull request is in clean
  status" when it could merge now, "… in unstable status" when only a check that is not required
  is pending or failing — peter-evans/enable-pull-request-automerge#355, cli/cli reports —, "Auto
  merge is not allowed for this repository" when the repo disallows it, NOT_FOUND for an unknown
  node id) and `disablePullRequestAutoMerge`. Auto-merge merges, as the user who enabled it, once
  the required check passes (`checks_pass`).
- `mergeable_state` as documented: `dirty` (conflict), `blocked` (a required check pending),
  `unstable` (only a check that is not required pending or failing: mergeable), `clean`.

The head of an open pull request follows its branch on the remote, as on GitHub, so a push to
the branch by anyone (plain `git push` in a test) moves it.
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

DOCS = "https://docs.github.com/rest"


@dataclass
class Pull:
    number: int
    node_id: str
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
    closed_by: str | None = None
    labels: list[str] = field(default_factory=list)
    auto_merge: dict[str, Any] | None = None
    checks_passed: bool = False
    comments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Repo:
    owner: str
    name: str
    remote: GitRemote
    default_branch: str = "main"
    #: A branch protection rule requiring a status check: pulls are `blocked` until `checks_pass`.
    required_check: bool = False
    #: A status check that is not required and stays pending/failing: pulls are `unstable`.
    optional_check_failing: bool = False
    allow_auto_merge: bool = True
    pulls: dict[int, Pull] = field(default_factory=dict)


class GithubFake(Served):
    def __init__(self) -> None:
        #: token → (login, may write)
        self.tokens: dict[str, tuple[str, bool]] = {}
        self.repos: dict[str, Repo] = {}
        self.lock = threading.RLock()
        self._numbers = itertools.count(1)
        self._comment_ids = itertools.count(100)
        #: (method, path) of every authenticated request, for assertions.
        self.requests: list[tuple[str, str]] = []
        #: Set whenever a pull request is opened, merged or closed (tests wait on it, never sleep).
        self.changed = threading.Condition(self.lock)

    # --- setup and test hooks ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The API root PyGithub takes as `base_url` (GitHub Enterprise Server's shape)."""
        return self.root + "/api/v3"

    def add_token(self, token: str, login: str, *, write: bool = True) -> None:
        self.tokens[token] = (login, write)

    def add_repo(self, full_name: str, remote: Path, **kw: Any) -> Repo:
        owner, name = full_name.split("/")
        repo = Repo(owner=owner, name=name, remote=GitRemote(remote), **kw)
        self.repos[full_name] = repo
        return repo

    def checks_pass(self, full_name: str, number: int) -> None:
        """The required status check succeeded: an enabled auto-merge merges now."""
        with self.lock:
            repo = self.repos[full_name]
            pull = repo.pulls[number]
            pull.checks_passed = True
            if pull.auto_merge is not None and pull.state == "open":
                self._do_merge(
                    repo, pull, pull.auto_merge["enabled_by"]["login"], pull.auto_merge["merge_method"]
                )

    def wait_for(self, predicate: Any, timeout: float = 60) -> Any:
        """Block until `predicate()` is truthy (re-checked on every change); its value."""
        with self.changed:
            ok = self.changed.wait_for(predicate, timeout=timeout)
        assert ok, "the GitHub fake never reached the awaited state"
        return ok

    # --- dispatch --------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = urlsplit(target)
        try:
            auth = headers.get("authorization", "")
            token = auth.split(" ", 1)[1] if " " in auth else ""
            if token not in self.tokens:
                return 401, {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
            user, write = self.tokens[token]
            payload = json.loads(body) if body else None
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with self.lock:
                self.requests.append((method, url.path))
                if url.path == "/api/graphql":
                    return 200, self._graphql(user, write, payload or {})
                if method != "GET" and not write:
                    raise HttpError(
                        403,
                        {
                            "message": "Resource not accessible by personal access token",
                            "documentation_url": DOCS,
                            "status": "403",
                        },
                    )
                return self._rest(method, url.path, query, payload, user)
        except HttpError as err:
            return err.status, err.payload

    def _rest(
        self, method: str, path: str, query: dict[str, str], payload: Any, user: str
    ) -> tuple[int, Any]:
        m = re.fullmatch(r"/api/v3/repos/([^/]+)/([^/]+)(/.*)?", path)
        if m is None:
            raise _not_found()
        repo = self.repos.get(f"{unquote(m.group(1))}/{unquote(m.group(2))}")
        if repo is None:
            raise _not_found()
        rest = m.group(3) or ""
        if rest == "" and method == "GET":
            return 200, self._repo_json(repo)
        if rest == "/pulls" and method == "GET":
            return 200, self._list(repo, query)
        if rest == "/pulls" and method == "POST":
            return 201, self._create(repo, payload or {}, user)
        if m2 := re.fullmatch(r"/(pulls|issues)/(\d+)(/\w+)?", rest):
            kind, number, sub = m2.group(1), int(m2.group(2)), m2.group(3) or ""
            pull = repo.pulls.get(number)
            if pull is None:
                raise _not_found()
            if kind == "pulls" and sub == "" and method == "GET":
                return 200, self._pull_json(repo, pull)
            if kind == "pulls" and sub == "" and method == "PATCH":
                return 200, self._edit(repo, pull, payload or {}, user)
            if kind == "pulls" and sub == "/merge" and method == "PUT":
                return 200, self._merge(repo, pull, payload or {}, user)
            if kind == "issues" and sub == "" and method == "GET":
                return 200, self._issue_json(repo, pull)
            if kind == "issues" and sub == "/labels" and method == "POST":
                # Both documented forms: {"labels": [...]} and a bare array (what PyGithub sends).
                labels = payload if isinstance(payload, list) else (payload or {}).get("labels")
                if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
                    raise _invalid("labels", "Invalid request.\n\nFor 'links/0/schema', nil is not an array.")
                pull.labels += [x for x in labels if x not in pull.labels]
                self.changed.notify_all()
                return 200, [self._label(x) for x in pull.labels]
            if kind == "issues" and sub == "/comments" and method == "GET":
                return 200, list(pull.comments)
            if kind == "issues" and sub == "/comments" and method == "POST":
                text = (payload or {}).get("body")
                if not isinstance(text, str) or not text:
                    raise _invalid("body", "body wasn't supplied.")
                comment = {"id": next(self._comment_ids), "body": text, "user": self._user(user)}
                pull.comments.append(comment)
                return 201, comment
        raise _not_found()

    # --- pulls -----------------------------------------------------------------------------------

    def _head_sha(self, repo: Repo, pull: Pull) -> str:
        if pull.merged_head is not None:
            return pull.merged_head
        return repo.remote.head(pull.head) or ""

    def _mergeable_state(self, repo: Repo, pull: Pull) -> str:
        if pull.state != "open":
            return "unknown"
        if not repo.remote.mergeable(pull.base, self._head_sha(repo, pull)):
            return "dirty"
        if repo.required_check and not pull.checks_passed:
            return "blocked"
        if repo.optional_check_failing:
            return "unstable"
        return "clean"

    def _list(self, repo: Repo, query: dict[str, str]) -> list[dict[str, Any]]:
        state = query.get("state", "open")
        head = query.get("head")
        out = []
        for pull in sorted(repo.pulls.values(), key=lambda p: -p.number):
            if state != "all" and pull.state != state:
                continue
            if head is not None and f"{repo.owner}:{pull.head}" != head:
                continue
            full = self._pull_json(repo, pull)
            for key in ("merged", "mergeable", "mergeable_state", "merged_by", "comments", "commits"):
                full.pop(key, None)  # the list shape GitHub sends lacks these
            out.append(full)
        return out

    def _create(self, repo: Repo, payload: dict[str, Any], user: str) -> dict[str, Any]:
        missing = [k for k in ("head", "base") if not isinstance(payload.get(k), str)]
        if missing or not isinstance(payload.get("title"), str):
            raise _invalid(missing[0] if missing else "title", "missing_field", code="missing_field")
        head = payload["head"].split(":", 1)[-1]
        base = payload["base"]
        head_sha = repo.remote.head(head)
        if head_sha is None:
            raise _invalid("head", None, code="invalid")
        if repo.remote.head(base) is None:
            raise _invalid("base", None, code="invalid")
        if any(p.head == head and p.state == "open" for p in repo.pulls.values()):
            raise _invalid(None, f"A pull request already exists for {repo.owner}:{head}.")
        if repo.remote.ahead(base, head_sha) == 0:
            raise _invalid(None, f"No commits between {base} and {head}")
        number = next(self._numbers)
        pull = Pull(
            number=number,
            node_id=f"PR_kw{number:08d}",
            title=payload["title"],
            body=str(payload.get("body") or ""),
            head=head,
            base=base,
            user=user,
        )
        repo.pulls[number] = pull
        self.changed.notify_all()
        return self._pull_json(repo, pull)

    def _edit(self, repo: Repo, pull: Pull, payload: dict[str, Any], user: str) -> dict[str, Any]:
        state = payload.get("state")
        if state not in (None, "open", "closed"):
            raise _invalid("state", None, code="invalid")
        for key in ("title", "body"):
            if isinstance(payload.get(key), str):
                setattr(pull, key, payload[key])
        if state == "closed" and pull.state == "open":
            pull.state, pull.closed_by, pull.auto_merge = "closed", user, None
        elif state == "open" and pull.state == "closed" and not pull.merged:
            pull.state, pull.closed_by = "open", None
        self.changed.notify_all()
        return self._pull_json(repo, pull)

    def _merge(self, repo: Repo, pull: Pull, payload: dict[str, Any], user: str) -> dict[str, Any]:
        method = payload.get("merge_method", "merge")
        if method not in ("merge", "squash", "rebase"):
            raise _invalid("merge_method", None, code="invalid")
        if pull.state != "open" or self._mergeable_state(repo, pull) not in ("clean", "unstable"):
            raise HttpError(
                405, {"message": "Pull Request is not mergeable", "documentation_url": DOCS, "status": "405"}
            )
        sha = payload.get("sha")
        if sha is not None and sha != self._head_sha(repo, pull):
            raise HttpError(
                409,
                {
                    "message": "Head branch was modified. Review and try the merge again.",
                    "documentation_url": DOCS,
                    "status": "409",
                },
            )
        commit = self._do_merge(repo, pull, user, method)
        return {"sha": commit, "merged": True, "message": "Pull Request successfully merged"}

    def _do_merge(self, repo: Repo, pull: Pull, user: str, method: str) -> str:
        head = self._head_sha(repo, pull)
        message = f"Merge pull request #{pull.number} from {repo.owner}/{pull.head}\n\n{pull.title}"
        commit = repo.remote.merge(pull.base, head, message, "squash" if method == "squash" else "merge")
        assert commit is not None, "checked mergeable before"
        pull.state, pull.merged, pull.merged_by = "closed", True, user
        pull.merge_commit_sha, pull.merged_head, pull.auto_merge = commit, head, None
        self.changed.notify_all()
        return commit

    # --- GraphQL ---------------------------------------------------------------------------------

    def _graphql(self, user: str, write: bool, payload: dict[str, Any]) -> dict[str, Any]:
        query = str(payload.get("query") or "")
        m = re.search(r"\b(enablePullRequestAutoMerge|disablePullRequestAutoMerge)\s*\(", query)
        if m is None:
            return {"errors": [{"message": "selfheal's fake only knows the auto-merge mutations"}]}
        name = m.group(1)
        inp = ((payload.get("variables") or {}).get("input")) or {}
        found = [
            (r, p)
            for r in self.repos.values()
            for p in r.pulls.values()
            if p.node_id == inp.get("pullRequestId")
        ]

        def error(kind: str, message: str) -> dict[str, Any]:
            return {
                "data": {name: None},
                "errors": [
                    {
                        "type": kind,
                        "path": [name],
                        "locations": [{"line": 1, "column": 1}],
                        "message": message,
                    }
                ],
            }

        if not found:
            return error(
                "NOT_FOUND", f"Could not resolve to a node with the global id of '{inp.get('pullRequestId')}'"
            )
        repo, pull = found[0]
        if not write:
            return error("FORBIDDEN", "Resource not accessible by personal access token")
        if name == "disablePullRequestAutoMerge":
            pull.auto_merge = None
            return {"data": {name: {"actor": self._actor(user), "clientMutationId": None}}}
        if not repo.allow_auto_merge:
            return error("UNPROCESSABLE", "Pull request Auto merge is not allowed for this repository")
        if pull.state != "open":
            return error("UNPROCESSABLE", "Pull request Pull request is closed")
        expected = inp.get("expectedHeadOid")
        if expected is not None and expected != self._head_sha(repo, pull):
            return error("UNPROCESSABLE", "Pull request The head of this pull request has changed")
        state = self._mergeable_state(repo, pull)
        if state in ("clean", "unstable"):
            return error("UNPROCESSABLE", f"Pull request Pull request is in {state} status")
        method = str(inp.get("mergeMethod") or "MERGE").lower()
        pull.auto_merge = {
            "enabled_by": self._user(user),
            "merge_method": method,
            "commit_title": None,
            "commit_message": None,
        }
        return {"data": {name: {"actor": self._actor(user), "clientMutationId": None}}}

    # --- shapes ----------------------------------------------------------------------------------

    def _user(self, login: str) -> dict[str, Any]:
        return {
            "login": login,
            "id": abs(hash(login)) % 10**6,
            "type": "User",
            "url": f"{self.url}/users/{login}",
        }

    def _actor(self, login: str) -> dict[str, Any]:
        return {
            "avatarUrl": "",
            "login": login,
            "resourcePath": f"/{login}",
            "url": f"https://github.example/{login}",
        }

    def _label(self, name: str) -> dict[str, Any]:
        return {"id": abs(hash(name)) % 10**6, "name": name, "color": "ededed", "default": False}

    def _repo_json(self, repo: Repo) -> dict[str, Any]:
        full = f"{repo.owner}/{repo.name}"
        return {
            "id": abs(hash(full)) % 10**6,
            "name": repo.name,
            "full_name": full,
            "owner": self._user(repo.owner),
            "default_branch": repo.default_branch,
            "allow_auto_merge": repo.allow_auto_merge,
            "url": f"{self.url}/repos/{full}",
        }

    def _pull_json(self, repo: Repo, pull: Pull) -> dict[str, Any]:
        full = f"{repo.owner}/{repo.name}"
        api = f"{self.url}/repos/{full}"
        base_sha = repo.remote.head(pull.base) or ""
        return {
            "url": f"{api}/pulls/{pull.number}",
            "id": pull.number,
            "node_id": pull.node_id,
            "html_url": f"https://github.example/{full}/pull/{pull.number}",
            "issue_url": f"{api}/issues/{pull.number}",
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "body": pull.body,
            "user": self._user(pull.user),
            "labels": [self._label(x) for x in pull.labels],
            "draft": False,
            "merged": pull.merged,
            "mergeable": None if pull.state != "open" else self._mergeable_state(repo, pull) != "dirty",
            "mergeable_state": self._mergeable_state(repo, pull),
            "merged_by": self._user(pull.merged_by) if pull.merged_by else None,
            "merge_commit_sha": pull.merge_commit_sha,
            "auto_merge": pull.auto_merge,
            "head": {
                "ref": pull.head,
                "sha": self._head_sha(repo, pull),
                "label": f"{repo.owner}:{pull.head}",
                "repo": self._repo_json(repo),
                "user": self._user(repo.owner),
            },
            "base": {
                "ref": pull.base,
                "sha": base_sha,
                "label": f"{repo.owner}:{pull.base}",
                "repo": self._repo_json(repo),
                "user": self._user(repo.owner),
            },
            "comments": len(pull.comments),
            "commits": 1,
        }

    def _issue_json(self, repo: Repo, pull: Pull) -> dict[str, Any]:
        full = f"{repo.owner}/{repo.name}"
        return {
            "url": f"{self.url}/repos/{full}/issues/{pull.number}",
            "number": pull.number,
            "state": pull.state,
            "title": pull.title,
            "user": self._user(pull.user),
            "labels": [self._label(x) for x in pull.labels],
            "closed_by": self._user(pull.closed_by)
            if pull.closed_by
            else (self._user(pull.merged_by) if pull.merged_by else None),
            "pull_request": {"url": f"{self.url}/repos/{full}/pulls/{pull.number}"},
        }


def _not_found() -> HttpError:
    return HttpError(404, {"message": "Not Found", "documentation_url": DOCS, "status": "404"})


def _invalid(field_name: str | None, message: str | None, *, code: str = "custom") -> HttpError:
    error: dict[str, Any] = {"resource": "PullRequest", "code": code}
    if field_name:
        error["field"] = field_name
    if message:
        error["message"] = message
    return HttpError(
        422, {"message": "Validation Failed", "errors": [error], "documentation_url": DOCS, "status": "422"}
    )
