"""The coding agent's plain activities: its configuration, its workspace, and the draft it leaves.

The model requests and tool calls are activities pydantic-ai registers from the agent
(`investigation/coding_agent.py`); these are the ones the coding workflow calls itself. The
workspace is a fresh worktree of the service's repository on its own branch
(`selfheal/<incident>-coding`, under `<worktrees_dir>/coding`), never the one an approved fix runs
in. The draft is the worktree's diff of exactly the files the agent wrote, then checked on a
clean checkout: reset to the base, the patch applied, the tests run in the sandbox. Nothing here
commits or pushes; the patch runs only as an approved plan.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio import activity

from activities.remediation_settings import RemediationSettings
from connectors.base import ConnectorError
from investigation.coding_tools import CODING_DIR, CodingRuntime, CodingToolError, confined, run_tests
from models.coding import (
    MAX_PATCH_CHARS,
    MAX_TEST_OUTPUT_CHARS,
    CodingDraft,
    CodingFinishRequest,
    CodingRunConfig,
    CodingWorkspace,
)
from models.plan import CommandAction
from models.remediation import CodingRequest
from playbooks.patch import PatchError, patch_files
from playbooks.proposal import ProposalRefused, ProposalTarget, Runnable, plan_proposal

if TYPE_CHECKING:
    from connectors.git.repo import GitRepo, Worktree

#: A stand-in commit to render the service's plan with, only for its test commands.
_STAND_IN = "0" * 40


def coding_worktree_id(incident_id: str) -> str:
    """The coding agent's worktree and branch name for an incident (not the fix's own)."""
    return f"{incident_id}-coding"


class CodingActivities:
    def __init__(
        self,
        config: CodingRunConfig,
        settings: RemediationSettings,
        runtime: CodingRuntime,
        *,
        open_repo: Callable[[str], GitRepo],
        public_url: str = "",
    ) -> None:
        self.config = config
        self.settings = settings
        self.runtime = runtime
        self.open_repo = open_repo
        self.public_url = public_url

    @property
    def _dir(self) -> Path:
        return self.runtime.worktrees_dir / CODING_DIR

    @activity.defn(name="coding_agent_config")
    async def coding_agent_config(self) -> CodingRunConfig:
        """Model name, price and budgets of the coding agent: recorded in history, so no secrets."""
        return self.config

    @activity.defn(name="prepare_coding_workspace")
    async def prepare_coding_workspace(self, req: CodingRequest) -> CodingWorkspace:
        """A fresh worktree of the service's repository and its rendered test commands, or why not."""
        return await asyncio.to_thread(self._prepare, req)

    def _prepare(self, req: CodingRequest) -> CodingWorkspace:
        if not self.settings.enabled:
            return CodingWorkspace(reason="remediation is disabled (remediation.enabled)")
        defaults = self.settings.services.get(req.service)
        if defaults is None:
            return CodingWorkspace(
                reason=f"no remediation.services.{req.service or '<service>'} defaults: the coding agent"
                " needs the service's repository and test command, and its patch the service's deploy"
            )
        repo_name = defaults.repo
        repo_settings = self.settings.repos[repo_name]  # validated at load
        tests = self._tests(req, repo_name)
        if not tests and repo_settings.test_command:
            tests = [
                CommandAction(
                    argv=list(repo_settings.test_command),
                    timeout_seconds=repo_settings.test_timeout_seconds,
                    sandbox=True,
                )
            ]
        if not tests:
            return CodingWorkspace(
                repo=repo_name,
                reason=f"no test command: set remediation.services.{req.service}.test (a command step) or"
                f" remediation.repos.{repo_name}.test_command",
            )
        try:
            wt = self.open_repo(repo_name).prepare_worktree(
                coding_worktree_id(req.incident_id), self._dir, clean=True
            )
        except ConnectorError as err:
            if err.retryable:
                raise
            return CodingWorkspace(repo=repo_name, reason=f"could not make a worktree: {err}")
        return CodingWorkspace(repo=repo_name, worktree=str(wt.path), base_ref=wt.base_ref, tests=tests)

    def _tests(self, req: CodingRequest, repo: str) -> list[CommandAction]:
        """The service's `test` command steps as its proposal plan would render them."""
        target = ProposalTarget.of(req.incident_id, req.service, req.service_label, req.alert)
        try:
            plan = plan_proposal(
                Runnable(kind="revert", repo=repo, sha=_STAND_IN),
                target,
                self.settings.services[req.service],
                description="the service's test commands",
                settings_ctx=self.settings.template_settings(self.public_url),
            )
        except ProposalRefused:
            return []
        return [
            step.action.model_copy(update={"sandbox": True})
            for step in plan.test
            if isinstance(step.action, CommandAction)
        ]

    def _worktree(self, req: CodingFinishRequest) -> tuple[GitRepo, Worktree]:
        from connectors.git.repo import BRANCH_PREFIX, Worktree

        name = coding_worktree_id(req.incident_id)
        path = self._dir.resolve() / name
        if Path(req.worktree).resolve() != path:
            raise ValueError(f"{req.worktree} is not the coding worktree of incident {req.incident_id}")
        repo = self.open_repo(req.repo)
        return repo, Worktree(incident_id=name, path=path, branch=BRANCH_PREFIX + name, base_ref="")

    @activity.defn(name="finish_coding_workspace")
    async def finish_coding_workspace(self, req: CodingFinishRequest) -> CodingDraft:
        """The draft: the diff of the files the agent wrote, then tested on a clean checkout with
        only that patch applied. A retry computes the same diff (the patch is staged by then)."""
        return await asyncio.to_thread(self._finish, req)

    def _finish(self, req: CodingFinishRequest) -> CodingDraft:
        repo, wt = self._worktree(req)
        wt = repo.prepare_worktree(wt.incident_id, self._dir)  # reuse it, changes kept
        paths: list[str] = []
        for path in req.paths:
            try:
                confined(wt.path, path)
            except CodingToolError:
                continue
            paths.append(path)
        patch = repo.draft_diff(wt, paths)
        if not patch:
            return CodingDraft()
        try:
            files = patch_files(patch)
        except PatchError as err:
            return CodingDraft(patch=patch[:MAX_PATCH_CHARS], problem=f"patch: {err}")
        if len(patch) > MAX_PATCH_CHARS:
            return CodingDraft(
                patch=patch[:MAX_PATCH_CHARS],
                files=files,
                problem=f"the patch has {len(patch):,} characters, more than {MAX_PATCH_CHARS:,}",
            )
        wt = repo.prepare_worktree(wt.incident_id, self._dir, clean=True)
        repo.apply_patch(wt, patch)
        result = run_tests(wt.path, req.tests, self.runtime, req.repo, emails=self.config.redact_emails)
        output = result.output
        if len(output) > MAX_TEST_OUTPUT_CHARS:
            output = "[… earlier output cut …]\n" + output[-MAX_TEST_OUTPUT_CHARS:]
        return CodingDraft(
            patch=patch, files=files, tests_passed=result.passed if result.ran else None, test_output=output
        )

    @activity.defn(name="cleanup_coding_workspace")
    async def cleanup_coding_workspace(self, req: CodingFinishRequest) -> None:
        """Remove the worktree and its branch (it carries no commit); a retry finds nothing to do."""

        def run() -> None:
            repo, wt = self._worktree(req)
            repo.cleanup(wt)

        await asyncio.to_thread(run)

    def all(self) -> list[Callable[..., object]]:
        return [
            self.coding_agent_config,
            self.prepare_coding_workspace,
            self.finish_coding_workspace,
            self.cleanup_coding_workspace,
        ]
