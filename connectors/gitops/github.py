"""GitHub (and GitHub Enterprise Server) pull requests through PyGithub.

Auto-merge is GitHub's own (`enablePullRequestAutoMerge` over GraphQL, with `expectedHeadOid`);
GitHub refuses to enable it on a pull request that can already be merged ("Pull request is in
clean status", and "… in unstable status" when only a check that is not required is pending or
failing), and then selfheal merges over REST with `sha` set to the head it pushed, which GitHub
refuses (409) if the branch moved.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from github import Auth, Github, GithubException
from github.PullRequest import PullRequest
from github.Repository import Repository

from connectors.gitops.forge import Forge, ForgeError, ForgeRequest, Status, http_error, prefer
from connectors.gitops.settings import ForgeSettings, secret

T = TypeVar("T")
_METHODS = {"merge": "MERGE", "squash": "SQUASH", "rebase": "REBASE"}
#: `mergeable_state`s GitHub merges now: `clean`; `unstable` (a check that is not required is
#: pending or failing); `has_hooks` (GHES: clean, with pre-receive hooks). Auto-merge is refused
#: in these ("Pull request is in <state> status").
MERGEABLE_NOW = ("clean", "unstable", "has_hooks")


def _message(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    parts = [str(data.get("message") or exc.message or "")]
    for err in data.get("errors") or []:
        if isinstance(err, dict) and err.get("message"):
            parts.append(str(err["message"]))
    return ": ".join(p for p in parts if p)


class GithubForge(Forge):
    kind = "github"

    def __init__(self, settings: ForgeSettings) -> None:
        self.settings = settings
        self.owner = settings.project.split("/", 1)[0]
        self._gh = Github(
            base_url=settings.url,
            auth=Auth.Token(secret(settings.token, "gitops.forges.<repo>.token")),
            timeout=int(settings.request_timeout_seconds),
            retry=None,
        )
        self._repo_obj: Repository | None = None

    @property
    def _repo(self) -> Repository:
        """The repository, read once (its first use checks the token and the project)."""
        if self._repo_obj is None:
            self._repo_obj = self._gh.get_repo(self.settings.project)
        return self._repo_obj

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except GithubException as exc:
            raise http_error(f"github {what}", exc.status, _message(exc)) from exc
        except OSError as exc:
            raise ForgeError(
                f"github {what}: cannot reach {self.settings.url}: {exc}", retryable=True
            ) from exc

    @staticmethod
    def _state(pr: PullRequest) -> ForgeRequest:
        merged = bool(pr.merged)
        status: Status = "merged" if merged else ("open" if pr.state == "open" else "closed")
        return ForgeRequest(
            number=pr.number,
            url=pr.html_url,
            branch=pr.head.ref,
            base=pr.base.ref,
            status=status,
            head_sha=pr.head.sha,
            merge_commit=pr.merge_commit_sha if merged else None,
            merged_by=pr.merged_by.login if merged and pr.merged_by is not None else None,
            auto_merge=pr.auto_merge is not None,
            mergeable=pr.mergeable_state in MERGEABLE_NOW,
        )

    def find(self, branch: str) -> ForgeRequest | None:
        def run() -> ForgeRequest | None:
            pulls = self._repo.get_pulls(state="all", head=f"{self.owner}:{branch}")
            numbers = [p.number for p in pulls if p.head.ref == branch]
            return prefer([self._state(self._repo.get_pull(n)) for n in numbers[:20]])

        return self._call(f"find pull request from {branch}", run)

    def create(self, branch: str, base: str, title: str, body: str, labels: list[str]) -> ForgeRequest:
        def run() -> ForgeRequest:
            pr = self._repo.create_pull(base=base, head=branch, title=title, body=body)
            if labels:
                pr.add_to_labels(*labels)
            return self._state(self._repo.get_pull(pr.number))

        return self._call(f"open pull request from {branch}", run)

    def get(self, number: int) -> ForgeRequest:
        return self._call(f"read pull request #{number}", lambda: self._state(self._repo.get_pull(number)))

    def add_labels(self, number: int, labels: list[str]) -> None:
        self._call(f"label #{number}", lambda: self._repo.get_pull(number).add_to_labels(*labels))

    def auto_merge(self, number: int, head: str) -> str:
        def run() -> str:
            pr = self._repo.get_pull(number)
            if pr.merged or pr.state != "open":
                return "not open: nothing to merge"
            if pr.head.sha != head:
                return f"head moved to {pr.head.sha[:12]}: not merging"
            if pr.auto_merge is not None:
                return "auto-merge already enabled"
            if pr.mergeable_state not in MERGEABLE_NOW:
                try:
                    pr.enable_automerge(
                        merge_method=_METHODS[self.settings.merge_method], expected_head_oid=head
                    )
                    return "auto-merge enabled"
                except GithubException as exc:
                    text = _message(exc).lower()
                    if not any(f"{state} status" in text for state in MERGEABLE_NOW):
                        raise
            result = pr.merge(merge_method=self.settings.merge_method, sha=head)
            return f"merged as {str(result.sha)[:12]} (already mergeable)"

        return self._call(f"merge #{number}", run)

    def cancel_auto_merge(self, number: int) -> None:
        def run() -> None:
            pr = self._repo.get_pull(number)
            if pr.auto_merge is not None and pr.state == "open":
                pr.disable_automerge()

        self._call(f"disable auto-merge of #{number}", run)

    def comment(self, number: int, body: str) -> None:
        self._call(f"comment on #{number}", lambda: self._repo.get_pull(number).create_issue_comment(body))

    def comments(self, number: int) -> list[tuple[str, str]]:
        def run() -> list[tuple[str, str]]:
            found: list[Any] = list(itertools.islice(self._repo.get_pull(number).get_issue_comments(), 100))
            return [(c.user.login if c.user else "", c.body or "") for c in found]

        return self._call(f"read comments of #{number}", run)

    def closed_by(self, number: int) -> str | None:
        def run() -> str | None:
            issue = self._repo.get_issue(number)
            return issue.closed_by.login if issue.closed_by is not None else None

        return self._call(f"read who closed #{number}", run)

    def close(self, number: int) -> None:
        def run() -> None:
            pr = self._repo.get_pull(number)
            if pr.state == "open":
                pr.edit(state="closed")

        self._call(f"close #{number}", run)
