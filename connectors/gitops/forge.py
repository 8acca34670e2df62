"""The forge contract: one pull (merge) request per fix branch, found before it is ever opened.

Every method says what a retry does. `open_or_find` looks for a request from the branch first and,
when the forge answers "already exists" to a create (GitHub 422, GitLab and Gitea 409), looks again:
a retried activity or a crashed worker never opens a second request. Merging is only ever done
with the head commit selfheal pushed as a precondition (GitHub and GitLab `sha`, Gitea
`head_commit_id`, GitHub auto-merge `expectedHeadOid`), so a branch someone else pushed to is
never merged by selfheal. The exception is Gitea's scheduled merge, which keeps no head (its
`ScheduleAutoMerge` takes none): the wait cancels it as soon as it sees the head moved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from connectors.base import ConnectorError


class ForgeError(ConnectorError):
    """A forge refused or failed a call. `status` is the HTTP status (0 when it never answered)."""

    def __init__(self, message: str, *, retryable: bool, status: int = 0) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status


def http_error(what: str, status: int, message: str) -> ForgeError:
    """The one mapping from an HTTP failure to retryable or not: rate limits and 5xx are transient;
    bad credentials, missing permissions, unknown objects and refused input need a person."""
    retryable = status in (0, 408, 429) or status >= 500
    hint = ""
    if status == 401:
        hint = " (check the forge token: gitops.forges.<repo>.token)"
    elif status == 403 and "rate limit" not in message.lower():
        hint = " (the token lacks a permission: see docs/gitops.md)"
    elif status == 403:
        retryable = True
    return ForgeError(f"{what}: {status} {message}{hint}".strip(), retryable=retryable, status=status)


Status = Literal["open", "merged", "closed"]


@dataclass(frozen=True)
class ForgeRequest:
    """A pull/merge request as the forge reports it, in the terms selfheal reasons with."""

    number: int
    url: str
    branch: str
    base: str
    status: Status
    head_sha: str
    merge_commit: str | None = None
    merged_by: str | None = None
    closed_by: str | None = None
    auto_merge: bool = False
    #: The forge says it can be merged now (checks passed, no conflict, approvals in place).
    mergeable: bool = False


def prefer(found: list[ForgeRequest]) -> ForgeRequest | None:
    """Of the requests from one branch: the open one, else the merged one, else the newest closed."""
    for status in ("open", "merged", "closed"):
        same = [r for r in found if r.status == status]
        if same:
            return max(same, key=lambda r: r.number)
    return None


class Forge(ABC):
    """One repository on one forge, through its official client (GitHub, GitLab) or API (Gitea)."""

    kind: str

    @abstractmethod
    def find(self, branch: str) -> ForgeRequest | None:
        """The request whose head is `branch` (open first, then merged, then newest closed)."""

    @abstractmethod
    def create(self, branch: str, base: str, title: str, body: str, labels: list[str]) -> ForgeRequest:
        """Open a request; a ForgeError with `duplicate()` true when one from `branch` is open."""

    @abstractmethod
    def get(self, number: int) -> ForgeRequest:
        """The request now (read-only)."""

    @abstractmethod
    def add_labels(self, number: int, labels: list[str]) -> None:
        """Add labels; labels already there stay (idempotent)."""

    @abstractmethod
    def auto_merge(self, number: int, head: str) -> str:
        """Have the request merged once the forge allows it, only while its head is `head`: enable
        auto-merge, or merge now when it is already mergeable. Returns what was done. Safe to
        repeat: an enabled auto-merge is enabled again, a merged request is left alone."""

    @abstractmethod
    def cancel_auto_merge(self, number: int) -> None:
        """Turn auto-merge off (someone else pushed to the branch); a no-op when it is off."""

    @abstractmethod
    def comment(self, number: int, body: str) -> None:
        """Comment on the request (callers pass a marker and check `comments` to comment once)."""

    @abstractmethod
    def comments(self, number: int) -> list[tuple[str, str]]:
        """(author, body) of the human comments, oldest first (bounded to the last 100)."""

    def closed_by(self, number: int) -> str | None:
        """Who closed the request (None when the forge does not say)."""
        return self.get(number).closed_by

    @abstractmethod
    def close(self, number: int) -> None:
        """Close the request unmerged; a no-op when it is closed or merged."""

    def open_or_find(
        self, branch: str, base: str, title: str, body: str, labels: list[str]
    ) -> tuple[ForgeRequest, bool]:
        """The branch's request, opened only when none exists; (request, opened now). Labels are
        (re)applied to an open one, so a retry after a crash between create and label completes."""
        found = self.find(branch)
        opened = False
        if found is None:
            try:
                found = self.create(branch, base, title, body, labels)
                opened = True
            except ForgeError as err:
                if not duplicate(err):
                    raise
                found = self.find(branch)
                if found is None:
                    raise
        if found.status == "open" and labels:
            self.add_labels(found.number, labels)
        return found, opened


def duplicate(err: ForgeError) -> bool:
    """The forge's answer to a second request from the same branch."""
    text = str(err).lower()
    return err.status in (409, 422) and "already exist" in text
