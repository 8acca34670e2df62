"""GitLab merge requests through python-gitlab.

`merge: auto` merges now (`PUT …/merge` with `sha`) when GitLab says the request is `mergeable`,
else sets "merge when the pipeline succeeds" (`merge_when_pipeline_succeeds` and `sha`). GitLab
(12.10 on) answers 405 to the latter when no pipeline is running, even one about to start (issues
gitlab-org/gitlab#217710, #355455, #353984): not an error here, the wait asks again once the request
is mergeable. GitLab answers 409 when `sha` is no longer the source branch's head, and 401 (not
403) when the token's user may not merge into the target branch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import gitlab
from gitlab.exceptions import GitlabError
from gitlab.v4.objects import ProjectMergeRequest

from connectors.gitops.forge import Forge, ForgeError, ForgeRequest, Status, http_error, prefer
from connectors.gitops.settings import ForgeSettings, secret

T = TypeVar("T")


def _user(value: Any) -> str | None:
    return str(value.get("username")) if isinstance(value, dict) and value.get("username") else None


class GitlabForge(Forge):
    kind = "gitlab"

    def __init__(self, settings: ForgeSettings) -> None:
        self.settings = settings
        self._gl = gitlab.Gitlab(
            settings.url,
            private_token=secret(settings.token, "gitops.forges.<repo>.token"),
            timeout=settings.request_timeout_seconds,
            retry_transient_errors=False,
        )
        self._project = self._gl.projects.get(settings.project, lazy=True)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except GitlabError as exc:
            code = int(exc.response_code or 0)
            raise http_error(f"gitlab {what}", code, str(exc.error_message)) from exc
        except OSError as exc:
            raise ForgeError(
                f"gitlab {what}: cannot reach {self.settings.url}: {exc}", retryable=True
            ) from exc

    def _mr(self, number: int) -> ProjectMergeRequest:
        mr: ProjectMergeRequest = self._project.mergerequests.get(number)
        return mr

    @staticmethod
    def _state(mr: Any) -> ForgeRequest:
        state = str(mr.state)
        status: Status = "closed"
        if state == "merged":
            status = "merged"
        elif state in ("opened", "locked"):
            status = "open"
        merge_commit = getattr(mr, "merge_commit_sha", None) or getattr(mr, "squash_commit_sha", None)
        return ForgeRequest(
            number=int(mr.iid),
            url=str(mr.web_url),
            branch=str(mr.source_branch),
            base=str(mr.target_branch),
            status=status,
            head_sha=str(mr.sha),
            merge_commit=str(merge_commit) if status == "merged" and merge_commit else None,
            # `merged_by` is deprecated since 14.7 in favour of `merge_user`.
            merged_by=_user(getattr(mr, "merge_user", None)) or _user(getattr(mr, "merged_by", None)),
            closed_by=_user(getattr(mr, "closed_by", None)),
            auto_merge=bool(getattr(mr, "merge_when_pipeline_succeeds", False)),
            mergeable=getattr(mr, "detailed_merge_status", "") == "mergeable",
        )

    def find(self, branch: str) -> ForgeRequest | None:
        def run() -> ForgeRequest | None:
            found = self._project.mergerequests.list(source_branch=branch, state="all", get_all=False)
            return prefer([self._state(mr) for mr in found if mr.source_branch == branch])

        return self._call(f"find merge request from {branch}", run)

    def create(self, branch: str, base: str, title: str, body: str, labels: list[str]) -> ForgeRequest:
        def run() -> ForgeRequest:
            mr = self._project.mergerequests.create(
                {
                    "source_branch": branch,
                    "target_branch": base,
                    "title": title,
                    "description": body,
                    "labels": ",".join(labels),
                    "remove_source_branch": True,
                }
            )
            return self._state(mr)

        return self._call(f"open merge request from {branch}", run)

    def get(self, number: int) -> ForgeRequest:
        return self._call(f"read merge request !{number}", lambda: self._state(self._mr(number)))

    def add_labels(self, number: int, labels: list[str]) -> None:
        def run() -> None:
            mr = self._mr(number)
            mr.add_labels = ",".join(labels)
            mr.save()

        self._call(f"label !{number}", run)

    def auto_merge(self, number: int, head: str) -> str:
        def run() -> str:
            mr = self._mr(number)
            state = self._state(mr)
            if state.status != "open":
                return "not open: nothing to merge"
            if state.head_sha != head:
                return f"head moved to {state.head_sha[:12]}: not merging"
            if state.auto_merge:
                return "merge when pipeline succeeds already set"
            status = str(getattr(mr, "detailed_merge_status", "") or "unknown")
            try:
                if state.mergeable:
                    mr.merge(sha=head)
                else:
                    mr.merge(merge_when_pipeline_succeeds=True, sha=head)
            except GitlabError as exc:
                if exc.response_code == 405:  # nothing to wait for now: asked again when mergeable
                    return f"GitLab cannot merge it yet ({status}): asks again once it is mergeable"
                if exc.response_code == 401:
                    raise ForgeError(
                        f"gitlab merge !{number}: 401 {exc.error_message} (the token's user may not"
                        f" merge into {state.base}: see the branch's 'Allowed to merge', docs/gitops.md)",
                        retryable=False,
                        status=401,
                    ) from exc
                raise
            after = self._state(mr)
            if after.status == "merged":
                return f"merged as {(after.merge_commit or '')[:12]}"
            return "merge when pipeline succeeds set"

        return self._call(f"merge !{number}", run)

    def cancel_auto_merge(self, number: int) -> None:
        def run() -> None:
            mr = self._mr(number)
            if getattr(mr, "merge_when_pipeline_succeeds", False) and mr.state == "opened":
                mr.cancel_merge_when_pipeline_succeeds()

        self._call(f"cancel auto-merge of !{number}", run)

    def comment(self, number: int, body: str) -> None:
        self._call(f"comment on !{number}", lambda: self._mr(number).notes.create({"body": body}))

    def comments(self, number: int) -> list[tuple[str, str]]:
        def run() -> list[tuple[str, str]]:
            notes = self._mr(number).notes.list(
                sort="asc", order_by="created_at", per_page=100, get_all=False
            )
            return [
                (_user(getattr(n, "author", None)) or "", str(n.body))
                for n in notes
                if not getattr(n, "system", False)
            ]

        return self._call(f"read notes of !{number}", run)

    def close(self, number: int) -> None:
        def run() -> None:
            mr = self._mr(number)
            if mr.state == "opened":
                mr.state_event = "close"
                mr.save()

        self._call(f"close !{number}", run)
