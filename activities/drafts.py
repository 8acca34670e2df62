"""The draft activity: when an approved proposal healed an incident, write it down as a playbook.

Runs as the incident closes. It drafts the playbook (`playbooks/draft.py`), runs the real loader
and lint on it and checks it matches the incident's own alert, and only then proposes it: the
draft is recorded in the incident store (its name is what `/metrics` counts as accepted once a
later incident matches it), attached to the ticket as `<name>.yaml`, and pushed as branch
`selfheal/draft-<incident>` to the playbooks repository when one is configured; when that
repository has a forge (`gitops.forges.<repo>`), a pull request is opened from the branch, labelled
as remediation requests are by default (a label the forge refuses is said on the ticket, never
fails the draft), and its URL said on the ticket. A draft that cannot be made or does not lint is
refused with the reason on the ticket, never proposed. Every effect is idempotent: the store row
is keyed by incident, the attachment by name and size, the comment by a dedup key, the branch is
found again instead of pushed twice, the pull request is found by its branch before one is ever
opened, and a label already there stays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.remediation_settings import RemediationSettings
from connectors.base import ConnectorError, Tracker
from models.draft import DraftRequest, DraftResult
from models.incident import IncidentView
from playbooks.draft import (
    CommitFacts,
    Draft,
    DraftRefused,
    DraftSource,
    build_draft,
    lint_draft,
    source_from_view,
)
from playbooks.schema import DEFAULT_PR_LABELS

if TYPE_CHECKING:
    from connectors.git.publish import Published
    from connectors.git.repo import GitRepo
    from connectors.gitops.forge import Forge, ForgeRequest
    from connectors.incident_store import IncidentStore

log = structlog.get_logger(__name__)


class DraftActivities:
    def __init__(
        self,
        settings: RemediationSettings,
        *,
        tracker: Tracker,
        store: Callable[[], IncidentStore],
        open_repo: Callable[[str], GitRepo],
        playbook_names: Callable[[], Collection[str]] = lambda: (),
        kube_namespaces: Collection[str] | None = None,
        public_url: str = "",
        forge: Callable[[str], Forge | None] = lambda _repo: None,
    ) -> None:
        """`playbook_names` are the loaded playbooks' names (a draft takes a free one); `forge(repo)`
        is the repository's forge, None when `gitops.forges` has none (the branch is then only
        pushed, and the ticket asks for a pull request)."""
        self.settings = settings
        self.forge = forge
        self.tracker = tracker
        self.store = store
        self.open_repo = open_repo
        self.playbook_names = playbook_names
        self.kube_namespaces = kube_namespaces
        self.public_url = public_url

    @activity.defn(name="draft_playbook")
    async def draft_playbook(self, req: DraftRequest) -> DraftResult:
        structlog.contextvars.bind_contextvars(incident_id=req.view.id)
        try:
            return await asyncio.to_thread(self.draft, req.view, req.service_label)
        except ConnectorError as err:
            if err.retryable:
                raise
            raise ApplicationError(str(err), type="DraftFailed", non_retryable=True) from err

    def draft(self, view: IncidentView, service_label: str) -> DraftResult:
        """Draft, lint, record, attach, publish and comment; each step safe to repeat."""
        now = view.closed_at or datetime.now(UTC)
        try:
            source = source_from_view(view, service_label=service_label)
            draft = self.make(source)
        except DraftRefused as err:
            return self._refused(view, [str(err)], now)
        problems = lint_draft(
            draft,
            source.alert,
            known_repos=list(self.settings.repos),
            kube_namespaces=self.kube_namespaces,
            settings_ctx=self.settings.template_settings(self.public_url),
        )
        if problems:
            return self._refused(view, ["the draft does not lint: " + "; ".join(problems[:5])], now)
        published, push_problem = self._publish(view, draft, now)
        branch = published.branch if published is not None and not published.already_merged else ""
        pr, pr_problem = self._pull_request(view, draft, published) if branch else (None, "")
        self.store().record_draft(
            view.id,
            name=draft.name,
            status="proposed",
            kind=draft.kind,
            yaml=draft.text,
            branch=branch,
            now=now,
        )
        ticket = view.ticket
        if ticket is not None:
            self.tracker.attach(ticket.key, draft.filename, draft.text.encode("utf-8"))
            body = self._proposed_comment(draft, published, push_problem, pr, pr_problem)
            self.tracker.comment(ticket.key, body, f"{view.id}:playbook-draft")
        where = f", branch {branch}" if branch else ""
        where += f", pull request {pr.url}" if pr is not None else ""
        log.info("playbook drafted", name=draft.name, branch=branch, pull_request=pr.url if pr else "")
        return DraftResult(
            status="proposed",
            name=draft.name,
            branch=branch,
            pull_request=pr.url if pr is not None else "",
            message=f"drafted playbook {draft.name} ({draft.filename} on the ticket{where})",
        )

    def make(self, source: DraftSource) -> Draft:
        """The draft for `source` with the service's defaults; DraftRefused when it cannot be made."""
        defaults = self.settings.services.get(source.service)
        if defaults is None:
            raise DraftRefused(
                f"no remediation.services.{source.service} defaults to test, deploy and verify"
            )
        try:
            names = set(self.playbook_names())
        except Exception:  # playbooks that do not load leave nothing to collide with
            names = set()
        return build_draft(source, defaults, commit=self._commit, taken=names)

    def _commit(self, repo: str, sha: str) -> CommitFacts:
        from connectors.git.history import GitHistory

        if repo not in self.settings.repos:
            raise DraftRefused(f"repository {repo!r} is not configured (remediation.repos)")
        try:
            found = GitHistory(self.open_repo(repo).path).commits(sha, max_count=1)
        except ConnectorError as err:
            if err.retryable:
                raise
            raise DraftRefused(f"{repo}@{sha[:12]}: {err}") from err
        if not found:
            raise DraftRefused(f"{repo}@{sha[:12]}: no such commit")
        return CommitFacts(paths=tuple(found[0].paths), committed_at=found[0].committed_at)

    def _publish(self, view: IncidentView, draft: Draft, now: datetime) -> tuple[Published | None, str]:
        """Push the draft's branch to the playbooks repository, if one is configured; a refusal
        that retrying cannot cure is reported on the ticket, not raised."""
        from connectors.git.publish import publish_file

        name = self.settings.playbooks_repo
        if name is None:
            return None, ""
        folder = self.settings.playbooks_repo_dir.strip("/")
        path = draft.filename if folder in ("", ".") else f"{folder}/{draft.filename}"
        try:
            return (
                publish_file(
                    self.open_repo(name),
                    incident_id=view.id,
                    path=path,
                    content=draft.text,
                    message=f"playbooks: add {draft.name}, drafted from incident {view.id}",
                    when=int(now.timestamp()),
                ),
                "",
            )
        except ConnectorError as err:
            if err.retryable:
                raise
            return None, str(err)

    def _pull_request(
        self, view: IncidentView, draft: Draft, published: Published | None
    ) -> tuple[ForgeRequest | None, str]:
        """The draft branch's pull request on the playbooks repository's forge, opened or found by
        its branch (never a second one) and labelled; (None, "") without a forge or a pushed branch,
        a refusal retrying cannot cure (a bad token, a missing permission) as (None, why), and a
        label the forge refuses (Gitea's for one the repository lacks) as (request, why), for the
        ticket."""
        name = self.settings.playbooks_repo
        if name is None or published is None or published.already_merged or not published.remote:
            return None, ""
        try:
            forge = self.forge(name)
            if forge is None:
                return None, ""
            base = self.settings.repos[name].base_branch
            title = f"playbooks: add {draft.name}, drafted from incident {view.id}"
            pr, opened = forge.open_or_find(published.branch, base, title, self._pr_body(view, draft), [])
        except ConnectorError as err:
            if err.retryable:
                raise
            return None, str(err)
        log.info("draft pull request", url=pr.url, opened=opened, status=pr.status)
        if pr.status != "open":
            return pr, ""
        try:
            forge.add_labels(pr.number, list(DEFAULT_PR_LABELS))
        except ConnectorError as err:
            if err.retryable:
                raise
            log.warning("draft pull request not labelled", url=pr.url, error=str(err))
            return pr, str(err)
        return pr, ""

    def _pr_body(self, view: IncidentView, draft: Draft) -> str:
        """Why the draft was made, for the reviewer: the incident, its ticket and the approved fix."""
        last = view.remediations[-1] if view.remediations else None
        approved_by = last.approved_by if last is not None and last.approved_by else "an approver"
        ticket = view.ticket.key if view.ticket is not None else "none"
        fix = "revert" if draft.kind == "revert" else "patch"
        lines = [
            f"selfheal drafted playbook `{draft.name}` from incident `{view.id}` (ticket {ticket}).",
            "",
            f"Why: the incident closed healed by an approved proposed {fix} (approved by"
            f" {approved_by}), and no playbook captured that fix yet. The draft lints clean with the"
            " real loader and matches the incident's own alert.",
            "",
            f"- Incident: `{view.id}`",
            f"- Ticket: {ticket}",
            f"- Alert: `{view.alertname}` on service `{view.service}`",
            f"- Mode: {'approve, at most 2 runs a day, 1h apart' if draft.kind == 'revert' else 'suggest'}",
        ]
        if draft.notes:
            lines += ["", "Review notes:", *(f"- {note}" for note in draft.notes)]
        lines += [
            "",
            "Review the matchers, params and fix before merging; once merged into a configured"
            " playbook directory, the next incident of this shape matches it.",
        ]
        return "\n".join(lines)

    def _proposed_comment(
        self,
        draft: Draft,
        published: Published | None,
        push_problem: str,
        pr: ForgeRequest | None = None,
        pr_problem: str = "",
    ) -> str:
        mode = (
            "mode approve, at most 2 runs a day, 1h apart"
            if draft.kind == "revert"
            else "mode suggest: a patch fits only the code it was written against"
        )
        lines = [
            f"selfheal drafted playbook {draft.name} from this incident's approved fix: attached as"
            f" {draft.filename} ({mode}). It lints clean and matches this incident's alert; review the"
            " matchers, params and fix before merging.",
        ]
        repo = self.settings.playbooks_repo
        if repo is None:
            lines.append(
                "No playbooks repository is configured (remediation.playbooks_repo): add the file to a"
                " playbook directory to have the next incident of this shape match it."
            )
        elif push_problem:
            lines.append(f"Could not propose it to the playbooks repository {repo}: {push_problem}")
        elif published is not None and published.already_merged:
            lines.append(f"The playbooks repository {repo} already holds this playbook on its base branch.")
        elif pr is not None:
            base = self.settings.repos[repo].base_branch
            state = "" if pr.status == "open" else f" (now {pr.status})"
            lines.append(
                f"Proposed as pull request {pr.url}{state} from branch {pr.branch}"
                f" into {base} of {repo}. Once merged into a configured playbook directory, the next"
                " incident of this shape matches it."
            )
            if pr_problem:
                labels = ", ".join(DEFAULT_PR_LABELS)
                lines.append(f"Could not label the pull request {labels}: {pr_problem}")
        elif published is not None:
            where = f"{published.remote} of {repo}" if published.remote else f"the local repository {repo}"
            base = self.settings.repos[repo].base_branch
            if pr_problem:
                lines.append(f"Could not open a pull request on the forge of {repo}: {pr_problem}")
            lines.append(
                f"Proposed as branch {published.branch} (commit {published.commit[:12]}) on {where}:"
                f" open a pull request from it into {base}. Once merged into a configured playbook"
                " directory, the next incident of this shape matches it."
            )
        return "\n".join(lines)

    def _refused(self, view: IncidentView, reasons: list[str], now: datetime) -> DraftResult:
        self.store().record_draft(view.id, status="refused", reasons=reasons, now=now)
        text = "selfheal drafted no playbook from this incident: " + "; ".join(reasons)
        if view.ticket is not None:
            self.tracker.comment(view.ticket.key, text, f"{view.id}:playbook-draft")
        log.info("no playbook drafted", reasons=reasons)
        return DraftResult(status="refused", message=text)

    def all(self) -> list[Callable[..., object]]:
        return [self.draft_playbook]
