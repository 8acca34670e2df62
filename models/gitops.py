"""Activity and signal payloads of the GitOps deploy path: pull/merge requests on a forge, and
Argo CD / Flux syncs. The rendered actions themselves are in `models/plan.py`."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from models.plan import GitopsSyncAction, PullRequestAction

#: `selfheal/<incident id>` (the fix) or `selfheal/<incident id>-revert` (its rollback).
FIX_BRANCH = re.compile(r"^selfheal/(?P<incident>[0-9a-f]{12}-[0-9a-z]{6})(?P<revert>-revert)?$")


def incident_of_branch(branch: str) -> tuple[str, bool] | None:
    """The incident id a selfheal branch belongs to, and whether it is the revert branch."""
    m = FIX_BRANCH.fullmatch(branch)
    return (m.group("incident"), m.group("revert") is not None) if m else None


PrStatus = Literal["open", "merged", "closed"]


class PullRequestRequest(BaseModel):
    """Push the incident's branch and open its pull request, or find the one that exists."""

    incident_id: str
    repo: str
    action: PullRequestAction
    title: str
    body: str
    #: For a rollback: the (merge) commit on the base branch to revert in a `-revert` branch.
    revert_of: str | None = None


class PullRequestState(BaseModel):
    """One pull/merge request as the forge reports it, with what selfheal expects of it."""

    number: int
    url: str
    branch: str
    status: PrStatus
    #: The head commit now, and the one selfheal pushed (they differ once someone else pushed).
    head_sha: str
    expected_head: str
    merge_commit: str | None = None
    merged_by: str | None = None
    closed_by: str | None = None
    #: The last comment on a request closed unmerged (bounded, redacted): the reason humans gave.
    closed_reason: str = ""
    auto_merge: bool = False
    #: What selfheal did this time (opened, found, enabled auto-merge, merged…), for the ticket.
    detail: str = ""
    #: How often to look again while waiting (`gitops.pr_poll_seconds`), in history so it replays.
    poll_seconds: float = 300

    @property
    def head_moved(self) -> bool:
        return self.head_sha != self.expected_head


class PollRequest(BaseModel):
    incident_id: str
    repo: str
    number: int
    expected_head: str
    merge: Literal["auto", "human"] = "human"


class CloseRequest(BaseModel):
    """Comment on a request (once), and close it when `close`."""

    incident_id: str
    repo: str
    number: int
    comment: str
    close: bool = True


class SyncRequest(BaseModel):
    """Trigger (or look at) one Argo CD application / Flux resource for `revision`."""

    incident_id: str
    repo: str
    action: GitopsSyncAction
    #: The commit the deploy put on the branch (merge commit, pushed commit); None: the branch head.
    revision: str | None = None


class SyncState(BaseModel):
    done: bool = False
    #: A final failure (sync failed, health degraded after the revision applied): stop waiting.
    failed: bool = False
    #: What was seen: the revision the tool runs, sync and health status, conditions.
    detail: str = ""
    #: The revision this wait expects (resolved from the branch head when the request had none).
    revision: str = ""
    poll_seconds: float = 5


class RevisionRequest(BaseModel):
    """The commit on `remote/branch` carrying this incident's rollback (or fix) trailer."""

    incident_id: str
    repo: str
    branch: str
    remote: str = "origin"
    rollback: bool = True


class ForgeEvent(BaseModel):
    """A forge webhook about one of selfheal's requests, as the API forwards it (wakes the wait)."""

    incident_id: str
    branch: str
    number: int
    action: str
    forge: Literal["github", "gitlab", "gitea"]
    delivery: str = Field(default="", max_length=200)
