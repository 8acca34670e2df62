"""The git side of a remediation: an isolated worktree per incident, the fix as one commit, GitOps push.

Every operation is idempotent under activity retries and worker crashes, because its outcome is
recorded in git itself rather than in memory: the worktree and branch are named after the incident,
the fix commit carries a `Selfheal-Incident: <id>` trailer (found again instead of made twice, even
after a rebase changed its SHA), the rollback commit a `Selfheal-Rollback: <id>` trailer, and a
push first asks the remote whether it already has the commit. Fix steps run as separate
activities against the same worktree, so each is safe to retry on its own: reverting already
reverted commits is a no-op merge, and `edit_value` (connectors.config_files) journals its last
edit in the worktree's git directory so a retried edit is recognised instead of applied twice.

Git runs through `connectors.git.process` (hooks disabled, no credential prompts, no signing,
timeouts) with a fixed identity, so a worker never blocks on a terminal and never runs code from
the repository it is fixing. Failures become GitError; `retryable` marks the ones another attempt
can cure (network, lock contention), everything else needs a human.
"""

from __future__ import annotations

import math
import random
import re
import shutil
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import git
from pydantic import BaseModel

from connectors import config_files
from connectors.config_files import EditFormat
from connectors.git.process import LOCAL_TIMEOUT, NETWORK_TIMEOUT, GitError, git_error, ls_remote_head, run

#: Where a patch being applied is written: the worktree's own git directory, out of the fix's diff.
PATCH_FILE = "selfheal-fix.patch"

FIX_TRAILER = "Selfheal-Incident"
ROLLBACK_TRAILER = "Selfheal-Rollback"
BRANCH_PREFIX = "selfheal/"

_INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Push rejections that a fetch + rebase can cure: the remote branch moved since we looked.
_MOVED = ("non-fast-forward", "fetch first", "stale info", "cannot lock ref")
#: Pushes tried when the branch keeps moving (many fixes landing on one branch at once), each
#: after a short random pause so the racing pushers spread out.
PUSH_ATTEMPTS = 5

_repo_locks: dict[str, threading.Lock] = {}
#: One push at a time per (repository, remote, branch) in this process: concurrent fixes pushing
#: to one branch would otherwise reject each other (non-fast-forward) and retry in a storm.
_push_locks: dict[str, threading.Lock] = {}
_repo_locks_guard = threading.Lock()
#: When this process last fetched each (repository, remote, base branch): a burst of incidents
#: preparing worktrees shares one fetch instead of queueing one each behind the repo lock. A base
#: this stale is harmless: `push` rebases the fix onto whatever the remote holds by then.
_fetched_at: dict[str, float] = {}
FETCH_REUSE_SECONDS = 2.0


class Worktree(BaseModel):
    """An incident's private checkout; plain data, so activities can pass it along."""

    incident_id: str
    path: Path
    branch: str
    #: What the branch started from: `<remote>/<base_branch>`, or the local base branch.
    base_ref: str


def validate_incident_id(incident_id: str) -> str:
    """Incident ids name a directory and a branch; refuse anything that could escape or confuse."""
    if not _INCIDENT_ID.match(incident_id) or ".." in incident_id or incident_id.endswith((".lock", ".")):
        raise GitError(f"incident id {incident_id!r} is not usable as a branch/directory name")
    return incident_id


class GitRepo:
    """A local clone selfheal owns; incidents work in worktrees next to it, never in it."""

    def __init__(
        self,
        path: Path,
        *,
        remote: str = "origin",
        base_branch: str = "main",
        author: tuple[str, str] = ("selfheal", "selfheal@localhost"),
    ) -> None:
        try:
            self.repo = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise GitError(f"{path} is not a git repository") from exc
        self.path = Path(self.repo.working_tree_dir or path)
        self.remote = remote
        self.base_branch = base_branch
        self.author = author
        self._common = str(Path(self.repo.common_dir).resolve())
        self._remote_known: bool | None = None
        with _repo_locks_guard:
            self._lock = _repo_locks.setdefault(self._common, threading.Lock())

    # ---------------------------------------------------------------------------------- worktree

    def prepare_worktree(self, incident_id: str, worktrees_dir: Path, *, clean: bool = False) -> Worktree:
        """Create the incident's worktree on `selfheal/<id>`, or reuse it after a crash.

        An existing branch is never moved (it may already carry the fix), and a git operation a
        crash interrupted (revert, rebase, merge) is aborted. Uncommitted changes are kept: they are
        the fix in progress, made by earlier step activities. Pass `clean=True` when starting a fix
        attempt, to drop whatever an earlier, abandoned attempt left behind.
        """
        validate_incident_id(incident_id)
        worktrees_dir = worktrees_dir.resolve()
        wt_path = worktrees_dir / incident_id
        branch = BRANCH_PREFIX + incident_id
        if self._registered_here(wt_path, branch):
            # Every step of a fix prepares its worktree again: when git's own files say it is
            # registered with its branch checked out, skip the fetch, prunes and listing (six git
            # processes of a heal's few dozen); interrupted operations are still aborted below.
            wt = Worktree(incident_id=incident_id, path=wt_path, branch=branch, base_ref=self._base_ref())
            if clean:
                self._reset_worktree(wt)
            else:
                self._abort_in_progress(wt)
            return wt
        with self._lock:
            base_ref = self._refresh_base()
            self._git(self.path, "worktree", "prune")
            registered = self._registered_worktrees()
            for path, checked_out in list(registered.items()):
                stale_here = path == wt_path and (checked_out != branch or not (wt_path / ".git").exists())
                elsewhere = path != wt_path and checked_out == branch  # e.g. worktrees_dir was moved
                if stale_here or elsewhere:
                    self._ok(self.path, "worktree", "remove", "--force", "--force", str(path))
                    registered.pop(path)
            self._git(self.path, "worktree", "prune")
            if wt_path not in registered:
                if wt_path.exists():  # a crash between mkdir and registration, or a stray directory
                    shutil.rmtree(wt_path)
                worktrees_dir.mkdir(parents=True, exist_ok=True)
                if self._ref_exists(f"refs/heads/{branch}"):
                    self._git(self.path, "worktree", "add", str(wt_path), branch)
                else:
                    self._git(
                        self.path, "worktree", "add", "--no-track", "-b", branch, str(wt_path), base_ref
                    )
        wt = Worktree(incident_id=incident_id, path=wt_path, branch=branch, base_ref=base_ref)
        if clean:
            self._reset_worktree(wt)
        else:
            self._abort_in_progress(wt)
        return wt

    def _registered_here(self, wt_path: Path, branch: str) -> bool:
        """Whether `wt_path` is a worktree of this repository, registered both ways and with
        `branch` checked out, read from git's files (no git process). Anything else (a directory
        left by a crash, a detached HEAD, a registration elsewhere) takes the full path."""
        try:
            pointer = (wt_path / ".git").read_text(encoding="utf-8").strip()
            if not pointer.startswith("gitdir: "):
                return False
            admin = (wt_path / pointer.removeprefix("gitdir: ")).resolve()
            if admin.parent != (Path(self._common) / "worktrees").resolve():
                return False
            head = (admin / "HEAD").read_text(encoding="utf-8").strip()
            back = Path((admin / "gitdir").read_text(encoding="utf-8").strip())
        except OSError:
            return False
        return head == f"ref: refs/heads/{branch}" and back.resolve() == (wt_path / ".git").resolve()

    def cleanup(self, wt: Worktree) -> None:
        """Remove the worktree; delete its branch only when the remote or the base has its commits."""
        with self._lock:
            self._ok(self.path, "worktree", "remove", "--force", "--force", str(wt.path))
            if wt.path.exists() and wt.path.name == validate_incident_id(wt.incident_id):
                shutil.rmtree(wt.path)  # not registered (any more): leftovers of a crashed add
            self._git(self.path, "worktree", "prune")
            ref = f"refs/heads/{wt.branch}"
            if not self._ref_exists(ref):
                return
            if self._has_remote():
                self._ok(self.path, "fetch", "--quiet", self.remote, timeout=NETWORK_TIMEOUT)
            tip = self._git(self.path, "rev-parse", ref)
            containing = self._git(
                self.path, "for-each-ref", "--contains", tip, "--format=%(refname)", "refs/remotes/"
            ).split()
            if containing or self._is_ancestor(self.path, tip, self._base_ref()):
                self._git(self.path, "branch", "-D", wt.branch)

    # ------------------------------------------------------------------------------- fix commits

    def find_fix_commit(self, wt: Worktree, incident_id: str) -> str | None:
        """The newest commit in the worktree's history carrying `Selfheal-Incident: <id>`."""
        return self._find_trailer_commit(wt.path, "HEAD", FIX_TRAILER, incident_id)

    def commit_fix(self, wt: Worktree, incident_id: str, message: str) -> str:
        """Commit everything changed in the worktree as the fix; an existing fix commit wins."""
        validate_incident_id(incident_id)
        existing = self.find_fix_commit(wt, incident_id)
        if existing is not None:
            return existing
        return self._commit_all(wt, message, FIX_TRAILER, incident_id)

    def revert_fix(self, wt: Worktree, incident_id: str) -> str:
        """A commit undoing the fix (trailer `Selfheal-Rollback: <id>`); made once, found after."""
        validate_incident_id(incident_id)
        existing = self._find_trailer_commit(wt.path, "HEAD", ROLLBACK_TRAILER, incident_id)
        if existing is not None:
            return existing
        fix = self.find_fix_commit(wt, incident_id)
        if fix is None:
            raise GitError(
                f"no commit with {FIX_TRAILER}: {incident_id} on {wt.branch}: nothing to roll back"
            )
        self._reset_worktree(wt)  # rollback works from committed state only
        subject = self._git(wt.path, "log", "-1", "--format=%s", fix)
        self._revert_no_commit(wt, [fix])
        message = f'Revert "{subject}"\n\nThis reverts commit {fix}: verification of the fix failed.'
        return self._commit_all(wt, message, ROLLBACK_TRAILER, incident_id)

    def revert_window(
        self, wt: Worktree, since: datetime, until: datetime, paths: list[str], max_commits: int
    ) -> list[str]:
        """Revert (without committing) the base-branch commits in the window that touch `paths`.

        The window is on committer date, inclusive; `paths` are git glob pathspecs (`*` stays in
        one directory, `**` crosses them, a directory matches everything below it). Merge commits
        are skipped. Returns the reverted SHAs, newest first. No match, or more than `max_commits`
        matches (a partial revert is a new, untested state), is an error for a human.
        """
        pathspecs = [_pathspec(p) for p in paths]
        if not pathspecs:
            raise GitError("revert_window needs at least one path")
        lo, hi = _epoch(since), _epoch(until)
        # Only what the worktree was branched from: its fork point with the base branch.
        fork = self._git(wt.path, "merge-base", "HEAD", wt.base_ref)
        out = self._git(
            wt.path,
            "log",
            "--no-merges",
            "--format=%H %ct",
            f"--since={datetime.fromtimestamp(lo - 1, UTC).isoformat()}",
            f"--until={datetime.fromtimestamp(hi + 1, UTC).isoformat()}",
            fork,
            "--",
            *pathspecs,
        )
        matched: list[str] = []
        for line in out.splitlines():
            sha, _, stamp = line.partition(" ")
            if lo <= int(stamp) <= hi:
                matched.append(sha)
        window = (
            f"{datetime.fromtimestamp(lo, UTC).isoformat()} .. {datetime.fromtimestamp(hi, UTC).isoformat()}"
        )
        if not matched:
            raise GitError(
                f"no commit on {wt.base_ref} in {window} touches {', '.join(paths)}: nothing to revert"
            )
        if len(matched) > max_commits:
            raise GitError(
                f"{len(matched)} commits in {window} touch {', '.join(paths)}, more than max_commits="
                f"{max_commits}; refusing a partial revert: {', '.join(s[:10] for s in matched)}"
            )
        self._revert_no_commit(wt, matched)
        return matched

    # ------------------------------------------------------------------ proposals: one commit, a patch

    def base_commit(self, sha: str) -> tuple[str, str]:
        """The full id and subject of `sha`, once it is a commit of the base branch that a revert
        can undo on its own (not a merge, not the first commit); GitError saying why otherwise."""
        if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
            raise GitError(f"{sha!r} is not a commit id")
        with self._lock:
            base_ref = self._refresh_base()
        code, full, _ = self._run(self.path, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
        if code != 0:  # pushed since a fetch another incident shares: fetch now
            with self._lock:
                self._refresh_base(force=True)
            code, full, _ = self._run(self.path, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
        if code != 0:
            raise GitError(f"commit {sha} does not exist in {self.path.name} (fetched {base_ref})")
        self._check_revertable(self.path, full.strip(), base_ref)
        return full.strip(), self._git(self.path, "log", "-1", "--format=%s", full.strip())

    def revert_commit(self, wt: Worktree, sha: str) -> str:
        """Revert (without committing) one commit of the base branch the worktree started from;
        returns its subject. A retry after success is a no-op merge, as for `revert_window`; a
        commit not on the base, a merge commit or a conflict with later changes is a GitError."""
        full = self._git(wt.path, "rev-parse", "--verify", f"{sha}^{{commit}}")
        self._check_revertable(wt.path, full, wt.base_ref)
        self._revert_no_commit(wt, [full])
        return self._git(wt.path, "log", "-1", "--format=%s", full)

    def _check_revertable(self, cwd: Path, full: str, base_ref: str) -> None:
        if not self._is_ancestor(cwd, full, base_ref):
            raise GitError(
                f"commit {full[:12]} is not on {base_ref}: only a change of the base branch is reverted"
            )
        parents = self._git(cwd, "rev-list", "--parents", "-n", "1", full).split()[1:]
        if len(parents) > 1:
            raise GitError(
                f"commit {full[:12]} is a merge commit: reverting it needs a human to choose the parent"
            )
        if not parents:
            raise GitError(f"commit {full[:12]} is the repository's first commit: not reverted")

    def check_patch(self, patch: str) -> None:
        """GitError unless `patch` applies cleanly to the tip of the base branch. Checked against a
        scratch index, so the clone and every worktree stay untouched."""
        with self._lock:
            base_ref = self._refresh_base()
        with tempfile.TemporaryDirectory(prefix="selfheal-patch-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            patch_file = Path(tmp) / PATCH_FILE
            patch_file.write_text(patch, encoding="utf-8")
            self._git(self.path, "read-tree", base_ref, env=env)
            code, _, err = self._run(self.path, "apply", "--cached", "--check", str(patch_file), env=env)
        if code != 0:
            raise GitError(f"the patch does not apply to {base_ref}: {err.strip()[-500:]}")

    def apply_patch(self, wt: Worktree, patch: str) -> str:
        """Apply `patch` to the worktree and its index (`git apply --index`; git itself refuses
        paths outside the worktree). A retry finds it applied and does nothing. Returns its
        numstat line per file."""
        patch_file = self._git_dir(wt) / PATCH_FILE
        patch_file.write_text(patch, encoding="utf-8")
        code, _, err = self._run(wt.path, "apply", "--index", "--check", str(patch_file))
        if code == 0:
            self._git(wt.path, "apply", "--index", str(patch_file))
        elif not self._ok(wt.path, "apply", "--index", "--reverse", "--check", str(patch_file)):
            raise GitError(f"the patch does not apply to {wt.branch}: {err.strip()[-500:]}")
        return self._git(wt.path, "apply", "--numstat", str(patch_file))

    def draft_diff(self, wt: Worktree, paths: list[str]) -> str:
        """The worktree's changes to `paths` (new files included) as a unified diff against its
        branch tip: what the coding agent drafted. Stages exactly those paths (nothing else a test
        run left behind) and commits nothing; asking again gives the same diff."""
        if not paths:
            return ""
        specs = []
        for path in paths:
            if not path or path.startswith("/") or ".." in Path(path).parts:
                raise GitError(f"path {path!r} must be relative to the repository and stay inside it")
            specs.append(f":(literal){path}")
        self._git(wt.path, "add", "--all", "--", *specs)
        code, out, err = self._run(
            wt.path,
            "-c",
            "core.quotePath=false",
            "diff",
            "--cached",
            "--no-color",
            "--no-ext-diff",
            "--no-renames",
            "--",
            *specs,
        )
        if code != 0:
            raise git_error(["diff", "--cached"], code, err)
        return out + "\n" if out else ""

    # -------------------------------------------------------------------------------------- edit

    def edit_value(
        self,
        wt: Worktree,
        file: str,
        key: str,
        *,
        value: Any = None,
        scale: float | None = None,
        max_value: float | str | None = None,
        fmt: EditFormat = "auto",
    ) -> tuple[Any, Any]:
        """Set or scale the value at dotted `key` in a YAML/JSON/TOML/.env file of the worktree;
        returns (old, new). `connectors.config_files.edit_value` edits; its journal, which makes
        a retried edit count once, lives in the worktree's git directory, out of the fix's diff.
        """
        try:
            return config_files.edit_value(
                wt.path,
                file,
                key,
                journal=self._journal_path(wt),
                value=value,
                scale=scale,
                max_value=max_value,
                fmt=fmt,
            )
        except config_files.EditError as exc:
            raise GitError(str(exc)) from exc

    # -------------------------------------------------------------------------------------- push

    def push(self, wt: Worktree, branch: str, remote: str = "origin") -> bool:
        """Publish the incident's commits on `remote/branch`; False when the remote already has them.

        Never forces. If the remote moved, only this incident's commits are rebased onto it (so a
        deploy branch other than the base never receives unrelated base commits) and the push is
        tried again, up to PUSH_ATTEMPTS times; a conflict is a GitError for a human.
        """
        if not self._ok(wt.path, "check-ref-format", f"refs/heads/{branch}"):
            raise GitError(f"{branch!r} is not a valid branch name")
        if self.find_fix_commit(wt, wt.incident_id) is None:
            raise GitError(f"{wt.branch} has no commit with {FIX_TRAILER}: {wt.incident_id}: nothing to push")
        with _repo_locks_guard:
            push_lock = _push_locks.setdefault(f"{self._common}\0{remote}\0{branch}", threading.Lock())
        with push_lock:
            return self._push(wt, branch, remote)

    def _push(self, wt: Worktree, branch: str, remote: str) -> bool:
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            if attempt > 1:
                time.sleep(random.uniform(0, 0.25 * attempt))  # noqa: S311 (spreading retries, not crypto)
            remote_sha = self._remote_head_at(wt.path, remote, branch)
            if remote_sha is not None:
                pending = self._commits_with_trailers(wt.path, f"{remote_sha}..HEAD")
                ours = [sha for sha, trailers in pending if any(v == wt.incident_id for _, v in trailers)]
                if all(self._remote_has_equivalent(wt.path, remote_sha, c) for c in ours):
                    return False  # already deployed, by SHA or as an equivalent (rebased) commit
                if len(pending) != len(ours) or not self._is_ancestor(wt.path, remote_sha, "HEAD"):
                    self._rebase_ours_onto(wt, remote_sha, [sha for sha, _ in pending], ours)
            # A missing branch is created with HEAD's history, as for a review branch.
            head = self._git(wt.path, "rev-parse", "HEAD")
            code, out, err = self._run(
                wt.path,
                "push",
                "--porcelain",
                remote,
                f"{head}:refs/heads/{branch}",
                timeout=NETWORK_TIMEOUT,
            )
            if code == 0:
                # The remote moved under our own hand: the next worktree must fetch, not reuse.
                _fetched_at.pop(f"{self._common}\0{remote}\0{branch}", None)
                return True
            if not any(reason in (out + err).lower() for reason in _MOVED):
                raise git_error(("push", remote), code, err)
        raise GitError(
            f"push to {remote}/{branch} rejected {PUSH_ATTEMPTS} times: the branch keeps moving",
            retryable=True,
        )

    def remote_contains(self, remote: str, branch: str, commit: str) -> bool:
        """Whether `remote/branch` has `commit`, or a rebased copy of it (same selfheal trailers).

        What a caller checks after `push`: a push may have rebased the commit, changing its SHA.
        """
        remote_sha = self._remote_head_at(self.path, remote, branch)
        return remote_sha is not None and self._remote_has_equivalent(self.path, remote_sha, commit)

    # ------------------------------------------------------------------------- review branches

    def publish_branch(self, wt: Worktree, remote: str = "origin") -> tuple[str, str]:
        """Put the worktree's branch (the fix, as committed) on `remote` under its own name, for a
        pull request; (local head, remote head). Never forces and never rebases: when the remote
        branch exists with other commits (someone pushed to it), it is left as it is and the two
        heads differ, which the caller treats as "the head moved". Idempotent."""
        head = self._git(wt.path, "rev-parse", "HEAD")
        remote_sha = self._remote_head_at(wt.path, remote, wt.branch)
        if remote_sha is None:
            code, _, err = self._run(
                wt.path,
                "push",
                "--porcelain",
                remote,
                f"{head}:refs/heads/{wt.branch}",
                timeout=NETWORK_TIMEOUT,
            )
            if code != 0:
                raise git_error(("push", remote), code, err)
            remote_sha = head
        return head, remote_sha

    def prepare_revert(self, incident_id: str, commit: str, worktrees_dir: Path) -> tuple[Worktree, str]:
        """A `selfheal/<id>-revert` branch from the freshly fetched base, holding one commit that
        reverts `commit` (a merge commit against its first parent) with `Selfheal-Rollback: <id>`;
        (worktree, revert commit). Made once: a retry finds the commit by its trailer."""
        validate_incident_id(incident_id)
        _fetched_at.pop(f"{self._common}\0{self.remote}\0{self.base_branch}", None)
        wt = self.prepare_worktree(f"{incident_id}-revert", worktrees_dir)
        existing = self._find_trailer_commit(wt.path, "HEAD", ROLLBACK_TRAILER, incident_id)
        if existing is not None:
            return wt, existing
        if not self._is_ancestor(wt.path, commit, "HEAD"):
            # Branched before the merge reached this clone: start over from the base as it is now.
            self._reset_worktree(wt)
            self._git(wt.path, "reset", "--hard", "--quiet", wt.base_ref)
            if not self._is_ancestor(wt.path, commit, "HEAD"):
                raise GitError(f"{commit[:12]} is not on {wt.base_ref}: nothing to revert there")
        parents = self._git(wt.path, "rev-list", "--parents", "-n", "1", commit).split()[1:]
        mainline = ("-m", "1") if len(parents) > 1 else ()
        subject = self._git(wt.path, "log", "-1", "--format=%s", commit)
        if not self._ok(wt.path, "revert", "--no-commit", "--no-edit", *mainline, commit):
            self._abort_in_progress(wt)
            raise GitError(f"reverting {commit[:12]} conflicts with later changes on {wt.base_ref}")
        self._ok(wt.path, "revert", "--quit")
        message = f'Revert "{subject}"\n\nThis reverts commit {commit}: verification of the fix failed.'
        return wt, self._commit_all(wt, message, ROLLBACK_TRAILER, incident_id)

    def head_patch(self, wt: Worktree, max_chars: int) -> str:
        """The worktree's last commit (the fix, or its revert) as a stat and patch, bounded."""
        code, out, _ = self._run(wt.path, "show", "--stat", "--patch", "--format=%H%n%s", "HEAD")
        text = out if code == 0 else "(diff unavailable)"
        return text if len(text) <= max_chars else text[:max_chars] + "\n… (truncated)"

    def contains(self, revision: str, commit: str) -> bool:
        """Whether `revision` (what a GitOps tool runs) is `commit` or a later commit containing it,
        after fetching the base branch (where merges land)."""
        if revision == commit:
            return True
        if self._has_remote():
            self._ok(
                self.path,
                "fetch",
                "--quiet",
                self.remote,
                f"+refs/heads/{self.base_branch}:refs/remotes/{self.remote}/{self.base_branch}",
                timeout=NETWORK_TIMEOUT,
            )
        known = self._ok(self.path, "cat-file", "-e", f"{revision}^{{commit}}")
        return known and self._is_ancestor(self.path, commit, revision)

    def branch_head(self, branch: str, remote: str | None = None) -> str | None:
        """The commit `remote/branch` is at now (fetched), or None when it does not exist."""
        return self._remote_head_at(self.path, remote or self.remote, branch)

    def trailer_commit_on(
        self, branch: str, incident_id: str, *, rollback: bool, remote: str | None = None
    ) -> str | None:
        """The commit on `remote/branch` carrying this incident's fix (or rollback) trailer: what a
        push put there, whatever SHA a rebase gave it."""
        head = self.branch_head(branch, remote)
        if head is None:
            return None
        trailer = ROLLBACK_TRAILER if rollback else FIX_TRAILER
        return self._find_trailer_commit(self.path, head, trailer, incident_id)

    # ---------------------------------------------------------------------------------- plumbing

    def _run(
        self, cwd: Path, *args: str, timeout: float = LOCAL_TIMEOUT, env: dict[str, str] | None = None
    ) -> tuple[int, str, str]:
        """Run git with the fixed options and our identity; (exit status, stdout, stderr)."""
        name, email = self.author
        return run(
            cwd,
            *args,
            timeout=timeout,
            config=("-c", f"user.name={name}", "-c", f"user.email={email}"),
            env=env,
        )

    def _git(
        self, cwd: Path, *args: str, timeout: float = LOCAL_TIMEOUT, env: dict[str, str] | None = None
    ) -> str:
        """Run git and return its stripped stdout; a failure raises GitError."""
        code, out, err = self._run(cwd, *args, timeout=timeout, env=env)
        if code != 0:
            raise git_error(args, code, err)
        return out.strip()

    def _ok(self, cwd: Path, *args: str, timeout: float = LOCAL_TIMEOUT) -> bool:
        """Run git for its exit status only (ancestry checks, ref existence, best-effort steps)."""
        return self._run(cwd, *args, timeout=timeout)[0] == 0

    def _has_remote(self) -> bool:
        """Asked several times per operation; a handle lives for one activity, so once is enough."""
        if self._remote_known is None:
            self._remote_known = self.remote in self._git(self.path, "remote").split()
        return self._remote_known

    def _base_ref(self) -> str:
        return f"{self.remote}/{self.base_branch}" if self._has_remote() else self.base_branch

    def _refresh_base(self, *, force: bool = False) -> str:
        base_ref = self._base_ref()
        key = f"{self._common}\0{self.remote}\0{self.base_branch}"
        stale = time.monotonic() - _fetched_at.get(key, -math.inf) > FETCH_REUSE_SECONDS
        if self._has_remote() and (stale or force):
            self._drop_broken_worktrees()
            self._git(
                self.path,
                "fetch",
                "--quiet",
                self.remote,
                f"+refs/heads/{self.base_branch}:refs/remotes/{self.remote}/{self.base_branch}",
                timeout=NETWORK_TIMEOUT,
            )
            _fetched_at[key] = time.monotonic()
        if not self._ref_exists(f"{base_ref}^{{commit}}"):
            raise GitError(f"base {base_ref} does not exist in {self.path}")
        return base_ref

    def _ref_exists(self, ref: str) -> bool:
        return self._ok(self.path, "rev-parse", "--verify", "--quiet", ref)

    def _registered_worktrees(self) -> dict[Path, str | None]:
        """Worktree path → checked-out branch (None when detached)."""
        found: dict[Path, str | None] = {}
        current: Path | None = None
        for line in self._git(self.path, "worktree", "list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                current = Path(line.removeprefix("worktree ")).resolve()
                found[current] = None
            elif line.startswith("branch ") and current is not None:
                found[current] = line.removeprefix("branch refs/heads/")
        return found

    def _git_dir(self, wt: Worktree) -> Path:
        """The worktree's own git directory (`.git/worktrees/<id>`): state outside the checkout.
        Read from the worktree's `.git` pointer file when there is one (no git process)."""
        try:
            pointer = (wt.path / ".git").read_text(encoding="utf-8").strip()
        except OSError:
            pointer = ""
        if pointer.startswith("gitdir: "):
            admin = (wt.path / pointer.removeprefix("gitdir: ")).resolve()
            if admin.is_dir():
                return admin
        return Path(self._git(wt.path, "rev-parse", "--absolute-git-dir"))

    def _journal_path(self, wt: Worktree) -> Path:
        return self._git_dir(wt) / "selfheal-last-edit.json"

    def _abort_in_progress(self, wt: Worktree) -> None:
        """Abort what a crash interrupted; aborting restores the state from before it began."""
        git_dir = self._git_dir(wt)
        for marker, abort in (
            ("rebase-merge", ("rebase", "--abort")),
            ("rebase-apply", ("rebase", "--abort")),
            ("REVERT_HEAD", ("revert", "--abort")),
            ("CHERRY_PICK_HEAD", ("cherry-pick", "--abort")),
            ("MERGE_HEAD", ("merge", "--abort")),
            ("sequencer", ("revert", "--quit")),
        ):
            if (git_dir / marker).exists() and not self._ok(wt.path, *abort):
                self._reset_worktree(wt)  # abort failed: only a clean slate is trustworthy
                return
        if self._git(wt.path, "diff", "--name-only", "--diff-filter=U"):
            self._reset_worktree(wt)  # unmerged paths without an operation to abort

    def _reset_worktree(self, wt: Worktree) -> None:
        """Drop half-finished operations and uncommitted changes; back on the branch's own tip."""
        git_dir = self._git_dir(wt)
        if ((git_dir / "rebase-merge").exists() or (git_dir / "rebase-apply").exists()) and not self._ok(
            wt.path, "rebase", "--abort"
        ):
            self._ok(wt.path, "rebase", "--quit")
        if (git_dir / "sequencer").exists():
            self._ok(wt.path, "revert", "--quit")
        self._git(wt.path, "checkout", "--quiet", "--force", wt.branch)  # a quit rebase leaves HEAD detached
        self._git(wt.path, "reset", "--hard", "--quiet", "HEAD")  # also clears REVERT_HEAD, MERGE_HEAD…
        self._git(wt.path, "clean", "-ffdx", "--quiet")
        self._journal_path(wt).unlink(missing_ok=True)

    def _is_ancestor(self, cwd: Path, ancestor: str, descendant: str) -> bool:
        return self._ok(cwd, "merge-base", "--is-ancestor", ancestor, descendant)

    def _trailers(self, cwd: Path, commit: str) -> list[tuple[str, str]]:
        """This commit's selfheal trailers as (key, value) pairs."""
        return self._commits_with_trailers(cwd, commit, single=True)[0][1]

    def _commits_with_trailers(
        self, cwd: Path, revs: str, *, single: bool = False
    ) -> list[tuple[str, list[tuple[str, str]]]]:
        """Commits of `revs`, oldest first, each with its selfheal trailers; one git call for all."""
        limit = ("-1",) if single else ("--reverse", "--topo-order")
        out = self._git(cwd, "log", *limit, "--format=%H%x1f%(trailers:only,unfold)%x1e", revs)
        commits: list[tuple[str, list[tuple[str, str]]]] = []
        for record in out.split("\x1e"):
            sha, sep, block = record.strip("\n").partition("\x1f")  # not strip(): \x1f counts as space
            if not sep:
                continue
            trailers: list[tuple[str, str]] = []
            for line in block.splitlines():
                name, colon, val = line.partition(":")
                if colon and name.strip() in (FIX_TRAILER, ROLLBACK_TRAILER):
                    trailers.append((name.strip(), val.strip()))
            commits.append((sha, trailers))
        return commits

    def _find_trailer_commit(self, cwd: Path, rev: str, trailer: str, incident_id: str) -> str | None:
        """Newest commit reachable from `rev` whose trailer `trailer` is exactly `incident_id`."""
        validate_incident_id(incident_id)
        out = self._git(cwd, "log", "--fixed-strings", f"--grep={trailer}: {incident_id}", "--format=%H", rev)
        for sha in out.split():
            if (trailer, incident_id) in self._trailers(cwd, sha):
                return sha
        return None

    def _remote_has_equivalent(self, cwd: Path, remote_sha: str, commit: str) -> bool:
        """The remote has this commit, or one with the same selfheal trailers (a rebased copy)."""
        if self._is_ancestor(cwd, commit, remote_sha):
            return True
        trailers = self._trailers(cwd, commit)
        return bool(trailers) and all(
            self._find_trailer_commit(cwd, remote_sha, key, val) is not None for key, val in trailers
        )

    def _remote_head_at(self, cwd: Path, remote: str, branch: str) -> str | None:
        """The remote branch's commit (fetched, so ancestry checks work), or None if it does not exist."""
        out = self._git(cwd, "ls-remote", "--heads", remote, f"refs/heads/{branch}", timeout=NETWORK_TIMEOUT)
        if ls_remote_head(out, branch) is None:
            return None
        # Under the repository lock: a `worktree add` in progress (another incident's) has an
        # all-zero HEAD for a moment, and any fetch in the repository then fails on it.
        with self._lock:
            self._drop_broken_worktrees()
            self._git(
                cwd,
                "fetch",
                "--quiet",
                remote,
                f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
                timeout=NETWORK_TIMEOUT,
            )
        return self._git(cwd, "rev-parse", f"refs/remotes/{remote}/{branch}")

    def _drop_broken_worktrees(self) -> None:
        """Forget worktrees whose `git worktree add` was killed midway (the caller holds the lock).

        Their admin directory keeps an all-zero HEAD, and while it exists every `git fetch` in the
        repository fails ("bad object worktrees/<id>/HEAD"): one crash would stop every push. The
        half-made worktree directory itself is left for `prepare_worktree`, which redoes it.
        """
        admin = Path(self._common) / "worktrees"
        if not admin.is_dir():
            return
        for entry in admin.iterdir():
            try:
                head = (entry / "HEAD").read_text(encoding="utf-8").strip()
            except OSError:
                continue
            if head and set(head) == {"0"}:
                shutil.rmtree(entry, ignore_errors=True)

    def _rebase_ours_onto(self, wt: Worktree, onto: str, pending: list[str], ours: list[str]) -> None:
        """Replay only this incident's commits (the tip of `pending`) onto `onto`."""
        if pending[len(pending) - len(ours) :] != ours:
            raise GitError(
                f"{wt.branch} mixes selfheal commits with others; refusing to push unrelated commits"
            )
        upstream = f"{ours[0]}^"
        if not self._ok(wt.path, "rebase", "--autostash", "--onto", onto, upstream):
            self._ok(wt.path, "rebase", "--abort")
            raise GitError(
                f"the remote moved and {wt.branch}'s fix no longer applies on top of it (rebase conflict)"
            )

    def _revert_no_commit(self, wt: Worktree, commits: list[str]) -> None:
        if not self._ok(wt.path, "revert", "--no-commit", "--no-edit", *commits):
            conflicted = self._git(wt.path, "diff", "--name-only", "--diff-filter=U")
            # Back to the state before the revert; earlier steps' edits are kept.
            self._abort_in_progress(wt)
            raise GitError(
                f"reverting {', '.join(c[:10] for c in commits)} conflicts with later changes"
                + (f" in {', '.join(conflicted.split())}" if conflicted else "")
            )
        # --no-commit leaves the sequencer's state behind; the changes stay in the index.
        self._ok(wt.path, "revert", "--quit")

    def _commit_all(self, wt: Worktree, message: str, trailer: str, incident_id: str) -> str:
        self._git(wt.path, "add", "--all")
        if self._ok(wt.path, "diff", "--cached", "--quiet"):
            raise GitError(f"nothing to commit in {wt.path}: the fix changed no file")
        body = message.strip() or "selfheal fix"
        self._git(wt.path, "commit", "--quiet", "--no-verify", "-m", f"{body}\n\n{trailer}: {incident_id}\n")
        self._journal_path(wt).unlink(missing_ok=True)
        return self._git(wt.path, "rev-parse", "HEAD")


def _epoch(moment: datetime) -> int:
    """Seconds since the epoch; a naive datetime is taken as UTC (alert times are UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def _pathspec(path: str) -> str:
    cleaned = path.strip()
    if not cleaned or cleaned.startswith((":", "/")) or ".." in Path(cleaned).parts:
        raise GitError(f"path glob {path!r} must be relative to the repository and stay inside it")
    return f":(glob){cleaned}"
