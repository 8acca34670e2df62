"""The proposal activity: an investigation's proposed revert or patch as a remediation plan.

Runs right after the investigation when no playbook plan exists. It only reads: it checks the
repository is configured and is the one the service deploys from, that the commit is a non-merge
commit of the base branch (or that the patch applies to it and stays inside the repository), and
renders the plan with the service's defaults (`playbooks/proposal.py`). A refusal is an answer
with reasons, not an error: the workflow puts them on the ticket and the incident stays with
humans. Nothing here runs a fix; the plan runs only after an approver approves it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from temporalio import activity

from activities.remediation_settings import RemediationSettings
from connectors.base import ConnectorError
from models.remediation import ProposalPlan, ProposalRequest
from playbooks.patch import PatchError, patch_files
from playbooks.proposal import (
    ProposalRefused,
    ProposalTarget,
    Runnable,
    check_repo,
    plan_proposal,
    runnable,
)

if TYPE_CHECKING:
    from connectors.git.repo import GitRepo


class ProposalActivities:
    def __init__(
        self, settings: RemediationSettings, *, open_repo: Callable[[str], GitRepo], public_url: str = ""
    ) -> None:
        """`open_repo` opens a configured repository by name (`remediation.repos`)."""
        self.settings = settings
        self.open_repo = open_repo
        self.public_url = public_url

    @activity.defn(name="plan_proposal")
    async def plan_proposal(self, req: ProposalRequest) -> ProposalPlan:
        return await asyncio.to_thread(self._plan, req)

    def _plan(self, req: ProposalRequest) -> ProposalPlan:
        fix = runnable(req.fix)
        if fix is None:
            return ProposalPlan()
        if not self.settings.enabled:
            return ProposalPlan(kind=fix.kind, reasons=["remediation is disabled (remediation.enabled)"])
        target = ProposalTarget.of(req.incident_id, req.service, req.service_label, req.alert)
        try:
            defaults = check_repo(
                fix, target, services=self.settings.services, repos=list(self.settings.repos)
            )
            fix, description = self._checked(fix, req.investigator or "the")
            plan = plan_proposal(
                fix,
                target,
                defaults,
                description=description,
                settings_ctx=self.settings.template_settings(self.public_url),
            )
        except ProposalRefused as err:
            return ProposalPlan(kind=fix.kind, reasons=err.reasons)
        return ProposalPlan(plan=plan, kind=fix.kind, description=description)

    def _checked(self, fix: Runnable, investigator: str) -> tuple[Runnable, str]:
        """Ask git: the commit (made full) is revertable on its own, or the patch applies and stays
        inside the repository. Returns the fix and its description."""
        by = (
            f"drafted by the {investigator}"
            if investigator == "coding agent"
            else f"proposed by the {investigator} investigation"
        )
        if fix.kind == "patch":
            try:
                files = patch_files(fix.patch)
            except PatchError as err:
                raise ProposalRefused([f"patch: {err}"]) from err
            try:
                self.open_repo(fix.repo).check_patch(fix.patch)
            except ConnectorError as err:
                raise _refused(err) from err
            shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
            return fix, f"Apply a patch to {fix.repo} ({shown}), {by}."
        try:
            full, subject = self.open_repo(fix.repo).base_commit(fix.sha)
        except ConnectorError as err:
            raise _refused(err) from err
        revert = Runnable(kind="revert", repo=fix.repo, sha=full)
        return revert, f"Revert {fix.repo}@{full[:12]} ({subject[:200]}), {by}."

    def all(self) -> list[Callable[..., object]]:
        return [self.plan_proposal]


def _refused(err: ConnectorError) -> Exception:
    """What git said, as a refusal; a transient failure (network, a lock) is raised for a retry."""
    return err if err.retryable else ProposalRefused([str(err)])
