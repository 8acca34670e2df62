"""GitOps activities: the pull request of a fix (or of its revert) on the repository's forge, and
Argo CD / Flux syncs. Each is short: the workflow does the waiting, between durable timers, so a
wait of hours never holds an activity slot.

Retries are safe by construction: the request is found by its branch before any create, pushes
never force, a comment carries a marker and is made once, and a Flux reconcile request is stamped
with the incident and revision, so asking twice is asking once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio import activity

from activities.remediation import in_thread, rejected
from connectors.gitops.forge import ForgeRequest
from connectors.gitops.settings import GitopsSettings
from models.gitops import (
    CloseRequest,
    PollRequest,
    PullRequestRequest,
    PullRequestState,
    RevisionRequest,
    SyncRequest,
    SyncState,
)
from pages.redact import redact

if TYPE_CHECKING:
    from connectors.git.repo import GitRepo
    from connectors.gitops.argocd import ArgoCd
    from connectors.gitops.flux import Flux
    from connectors.gitops.forge import Forge

#: The diff shown in a pull request body, at most.
MAX_DIFF_CHARS = 20_000
MARKER = "<!-- selfheal:{key} -->"
#: Argo CD operation phases after which the operation will not change by itself.
_ARGO_FINAL_FAILURES = ("Failed", "Error")


class GitopsActivities:
    def __init__(
        self,
        settings: GitopsSettings,
        *,
        open_repo: Callable[[str], GitRepo],
        worktrees_dir: Path,
        forge: Callable[[str], Forge | None],
        argocd: Callable[[], ArgoCd | None] = lambda: None,
        flux: Callable[[], Flux | None] = lambda: None,
        secret_values: Sequence[str] = (),
    ) -> None:
        """`forge(repo)` is that repository's forge (None when `gitops.forges` has none); `argocd()`
        None without `gitops.argocd`; `flux()` None without the `kube:` section. Clients are built
        on first use, so a missing token fails the step that needs it, not the worker."""
        self.settings = settings
        self.open_repo = open_repo
        self.worktrees_dir = worktrees_dir
        self._forge = forge
        self._argocd_client = argocd
        self._flux = flux
        self.secret_values = list(secret_values)

    def _forge_of(self, repo: str) -> Forge:
        forge = self._forge(repo)
        if forge is None:
            raise rejected(
                f"repo {repo!r} has no forge configured (gitops.forges.{repo}): cannot open a pull request"
            )
        return forge

    def _repo(self, name: str) -> GitRepo:
        try:
            return self.open_repo(name)
        except KeyError as exc:
            raise rejected(f"repo {name!r} is not configured (remediation.repos)") from exc

    def _state(self, pr: ForgeRequest, expected: str, detail: str = "", reason: str = "") -> PullRequestState:
        return PullRequestState(
            number=pr.number,
            url=pr.url,
            branch=pr.branch,
            status=pr.status,
            head_sha=pr.head_sha,
            expected_head=expected,
            merge_commit=pr.merge_commit,
            merged_by=pr.merged_by,
            closed_by=pr.closed_by,
            closed_reason=reason,
            auto_merge=pr.auto_merge,
            detail=detail,
            poll_seconds=self.settings.pr_poll_seconds,
        )

    def _closed_reason(self, forge: Forge, pr: ForgeRequest) -> tuple[ForgeRequest, str]:
        """Who closed an unmerged request and the last thing a person said on it (redacted)."""
        if pr.status != "closed":
            return pr, ""
        closed_by = pr.closed_by or forge.closed_by(pr.number)
        said = [body for _, body in forge.comments(pr.number) if "<!-- selfheal:" not in body]
        last = redact(said[-1], known=self.secret_values).replace("\n", " ").strip()[:500] if said else ""
        return dataclasses.replace(pr, closed_by=closed_by), last

    # --- pull requests ---------------------------------------------------------------------------

    @activity.defn(name="open_pull_request")
    async def open_pull_request(self, req: PullRequestRequest) -> PullRequestState:
        """Push `selfheal/<id>` (or `selfheal/<id>-revert`), open its request or find the one that
        exists, label it, and with `merge: auto` have it merged once the forge allows."""

        def run() -> PullRequestState:
            repo = self._repo(req.repo)
            forge = self._forge_of(req.repo)
            if req.revert_of:
                wt, _ = repo.prepare_revert(req.incident_id, req.revert_of, self.worktrees_dir)
            else:
                wt = repo.prepare_worktree(req.incident_id, self.worktrees_dir)
                if repo.find_fix_commit(wt, req.incident_id) is None:
                    raise rejected(f"{wt.branch} has no fix commit: nothing to propose")
            local, _ = repo.publish_branch(wt, repo.remote)
            base = req.action.base or repo.base_branch
            body = redact(
                f"{req.body}\n\n### Diff\n\n```diff\n{repo.head_patch(wt, MAX_DIFF_CHARS)}\n```",
                known=self.secret_values,
            )
            pr, opened = forge.open_or_find(wt.branch, base, req.title, body, req.action.labels)
            detail = "opened" if opened else f"found ({pr.status}), not opened again"
            if pr.status == "open" and req.action.merge == "auto" and pr.head_sha == local:
                detail += "; " + forge.auto_merge(pr.number, local)
                pr = forge.get(pr.number)
            pr, reason = self._closed_reason(forge, pr)
            return self._state(pr, local, detail, reason)

        return await in_thread(run, req.incident_id)

    @activity.defn(name="poll_pull_request")
    async def poll_pull_request(self, req: PollRequest) -> PullRequestState:
        """The request now. With `merge: auto`, ask again for the merge (a request that became
        mergeable since); when someone else moved its head, turn auto-merge off instead."""

        def run() -> PullRequestState:
            forge = self._forge_of(req.repo)
            pr = forge.get(req.number)
            detail = ""
            if pr.status == "open" and pr.head_sha != req.expected_head:
                # Whether or not the forge reports it (Gitea does not), no merge may stay scheduled.
                forge.cancel_auto_merge(req.number)
                detail = "head moved: auto-merge turned off"
                pr = forge.get(req.number)
            elif pr.status == "open" and req.merge == "auto" and not pr.auto_merge and pr.mergeable:
                detail = forge.auto_merge(req.number, req.expected_head)
                pr = forge.get(req.number)
            pr, reason = self._closed_reason(forge, pr)
            return self._state(pr, req.expected_head, detail, reason)

        return await in_thread(run, req.incident_id)

    @activity.defn(name="close_pull_request")
    async def close_pull_request(self, req: CloseRequest) -> bool:
        """Comment once (a marker finds an earlier one) and, when asked, close it; True if closed."""

        def run() -> bool:
            forge = self._forge_of(req.repo)
            marker = MARKER.format(key=f"{req.incident_id}:{'close' if req.close else 'note'}")
            if not any(marker in body for _, body in forge.comments(req.number)):
                forge.comment(req.number, f"{req.comment}\n\n{marker}")
            if req.close:
                forge.close(req.number)
            return req.close

        return await in_thread(run, req.incident_id)

    # --- syncs -----------------------------------------------------------------------------------

    @activity.defn(name="gitops_sync_start")
    async def gitops_sync_start(self, req: SyncRequest) -> SyncState:
        """Ask Argo CD to sync, or Flux to reconcile, for `revision` (the base branch head when
        None); the first look at its state comes with it."""

        def run() -> SyncState:
            repo = self._repo(req.repo)
            revision = req.revision or repo.branch_head(repo.base_branch)
            if not revision:
                raise rejected(f"{repo.remote}/{repo.base_branch} does not exist: nothing to sync")
            action = req.action
            if action.argocd is not None:
                done = self._argocd().sync(action.argocd.app)
            else:
                assert action.flux is not None
                f = action.flux
                stamp = f"selfheal-{req.incident_id}-{revision[:12]}"
                self._flux_client().request_reconcile(f.kind, f.namespace, f.name, stamp)
                done = f"reconcile requested ({stamp})"
            state = self._look(repo, req.model_copy(update={"revision": revision}))
            return state.model_copy(update={"detail": f"{done}; {state.detail}"})

        return await in_thread(run, req.incident_id)

    @activity.defn(name="gitops_sync_status")
    async def gitops_sync_status(self, req: SyncRequest) -> SyncState:
        def run() -> SyncState:
            return self._look(self._repo(req.repo), req)

        return await in_thread(run, req.incident_id)

    def _argocd(self) -> ArgoCd:
        argocd = self._argocd_client()
        if argocd is None:
            raise rejected("gitops.argocd is not configured but the playbook syncs an Argo CD application")
        return argocd

    def _flux_client(self) -> Flux:
        flux = self._flux()
        if flux is None:
            raise rejected("the `kube:` settings section is not configured but the playbook syncs Flux")
        return flux

    def _look(self, repo: GitRepo, req: SyncRequest) -> SyncState:
        """Done when the tool runs `revision` or a later commit containing it and reports healthy;
        failed when its sync of that revision failed for good."""
        revision = req.revision or ""
        action = req.action
        poll = self.settings.sync_poll_seconds
        if action.argocd is not None:
            app = self._argocd().get(action.argocd.app)
            at = any(repo.contains(r, revision) for r in app.running)
            tried = any(repo.contains(r, revision) for r in app.tried)
            synced = at and app.sync_status == "Synced" and app.settled
            done = synced and app.health == "Healthy"
            # `argocd app wait --health` fails on Degraded too: the revision is live and unhealthy.
            failed = (tried and app.phase in _ARGO_FINAL_FAILURES) or (synced and app.health == "Degraded")
            return SyncState(
                done=done, failed=failed, detail=app.describe(), revision=revision, poll_seconds=poll
            )
        assert action.flux is not None
        f = action.flux
        st = self._flux_client().status(f.kind, f.namespace, f.name)
        at = bool(st.applied_commit) and repo.contains(st.applied_commit, revision)
        tried = bool(st.attempted_commit) and repo.contains(st.attempted_commit, revision)
        current = st.observed_generation >= st.generation
        done = at and st.ready == "True" and current
        failed = bool(st.stalled) or (tried and st.handled_request and st.ready == "False")
        return SyncState(done=done, failed=failed, detail=st.describe(), revision=revision, poll_seconds=poll)

    @activity.defn(name="pushed_revision")
    async def pushed_revision(self, req: RevisionRequest) -> str:
        """The commit a push put on `remote/branch` for this incident (by trailer, whatever a
        rebase made of its SHA)."""

        def run() -> str:
            repo = self._repo(req.repo)
            sha = repo.trailer_commit_on(
                req.branch, req.incident_id, rollback=req.rollback, remote=req.remote
            )
            if sha is None:
                raise rejected(f"no commit of incident {req.incident_id} on {req.remote}/{req.branch}")
            return sha

        return await in_thread(run, req.incident_id)

    def all(self) -> list[Callable[..., object]]:
        return [
            self.open_pull_request,
            self.poll_pull_request,
            self.close_pull_request,
            self.gitops_sync_start,
            self.gitops_sync_status,
            self.pushed_revision,
        ]
