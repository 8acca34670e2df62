"""The git side of a remediation: an isolated worktree per incident, the fix as one commit, GitOps push.

Every operation is idempotent under activity retries and worker crashes, because its outcome is
recorded in git itself rather than in memory: the worktree and branch are named after the incident,
the fix commit carries a `Selfheal-Incident: <id>` trailer (found again instead of made twice, even
after a rebase changed its SHA), the rollback commit a `Selfheal-Rollback: <id>` trailer, and a
push first asks the remote whether it already has the commit. Fix steps run as separate
activities against the same worktree, so each is safe to retry on its own: reverting already
reverted commits is a no-op merge, and `edit_value` journals its last edit (in the worktree's git
directory) so a retried edit is recognised instead of applied twice.

Git runs through GitPython's command executor with hooks disabled, no credential prompts, no
signing and a fixed identity, so a worker never blocks on a terminal and never runs code from
the repository it is fixing. Failures become GitError; `retryable` marks the ones another attempt
can cure (network, lock contention), everything else needs a human.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import git
import tomlkit
import tomlkit.items
from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from connectors.base import ConnectorError
from models.settings import Section


class RepoSettings(Section):
    """A git repository selfheal may change: a local clone it owns, pushing to `remote`."""

    path: Path
    remote: str = "origin"
    base_branch: str = "main"


FIX_TRAILER = "Selfheal-Incident"
ROLLBACK_TRAILER = "Selfheal-Rollback"
BRANCH_PREFIX = "selfheal/"

EditFormat = Literal["auto", "yaml", "json", "toml", "env"]

_INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_NETWORK_TIMEOUT = 120.0
_LOCAL_TIMEOUT = 60.0
#: stderr fragments that mean "try again": transient network trouble or another git holding a lock.
_RETRYABLE_STDERR = (
    "could not resolve host",
    "connection refused",
    "failed to connect",
    "couldn't connect to server",
    "network is unreachable",
    "no route to host",
    "connection reset",
    "timed out",
    "did not complete in",  # GitPython's kill_after_timeout
    "early eof",
    "the remote end hung up",
    "temporary failure",
    "index.lock",  # another git in the same repository
    "cannot lock ref",
    "rpc failed",
    "returned error: 5",  # HTTP 5xx from the git server
)
#: Push rejections that a fetch + rebase can cure: the remote branch moved since we looked.
_MOVED = ("non-fast-forward", "fetch first", "stale info", "cannot lock ref")
#: Pushes tried when the branch keeps moving (many fixes landing on one branch at once), each
#: after a short random pause so the racing pushers spread out.
PUSH_ATTEMPTS = 5
#: Options for every git call: never run hooks from the repo, never sign, never prompt.
_GIT_CONFIG = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
    "-c",
    "core.editor=true",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "init.defaultBranch=main",
)
#: Fail instead of prompting; credential helpers and askpass programs configured for the worker still work.
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", "LC_ALL": "C"}
_CREDENTIALS_IN_URL = re.compile(r"(\w+://)[^/@\s]+@")

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


class GitError(ConnectorError):
    """A git operation failed; `retryable` says whether another attempt can help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(_CREDENTIALS_IN_URL.sub(r"\1***@", message), retryable=retryable)


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
                self._ok(self.path, "fetch", "--quiet", self.remote, timeout=_NETWORK_TIMEOUT)
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
        """Set or scale the value at dotted `key` in a YAML/JSON/TOML/.env file; returns (old, new).

        Comments, key order and indentation survive (ruamel round trip, tomlkit, line edits).
        Scaling keeps the unit (`512Mi` x 1.5 = `768Mi`), rounds integers up, and `max_value`
        caps the number in the value's own unit. A call repeating the previous edit on a file that
        still holds its result is a retry and returns the recorded result without editing again
        (so two identical edits in a row count once: write `scale=2.25`, not 1.5 twice).
        """
        if (value is None) == (scale is None):
            raise GitError(f"edit of {file}:{key}: give exactly one of value or scale")
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise GitError(f"edit of {file}:{key}: scale must be a positive number, got {scale}")
        target = _inside(wt.path, file)
        kind = _format_of(target) if fmt == "auto" else fmt
        text = target.read_text(encoding="utf-8")
        where = f"{file}:{key}"
        call = _digest(json.dumps([file, key, value, scale, max_value, kind], default=str, sort_keys=True))
        journal = self._journal_path(wt)
        last = _read_journal(journal)
        if last.get("call") == call and last.get("after") == _digest(text):
            return last["old"], last["new"]  # a retry of the edit that already happened

        def compute(old: Any) -> Any:
            return (
                _scaled(where, old, scale, max_value)
                if scale is not None
                else _checked(where, value, max_value)
            )

        if kind == "yaml":
            new_text, old, new = _edit_yaml(text, key, compute, where)
        elif kind == "json":
            new_text, old, new = _edit_json(text, key, compute, where)
        elif kind == "toml":
            new_text, old, new = _edit_toml(text, key, compute, where)
        else:
            new_text, old, new = _edit_env(text, key, compute, where)
        old, new = _plain(old), _plain(new)
        # Journal first: a crash before the file write then looks like "not applied", never twice.
        _write_journal(journal, {"call": call, "after": _digest(new_text), "old": old, "new": new})
        if new_text != text:
            target.write_text(new_text, encoding="utf-8")
        return old, new

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
                timeout=_NETWORK_TIMEOUT,
            )
            if code == 0:
                # The remote moved under our own hand: the next worktree must fetch, not reuse.
                _fetched_at.pop(f"{self._common}\0{remote}\0{branch}", None)
                return True
            if not any(reason in (out + err).lower() for reason in _MOVED):
                raise _git_error(("push", remote), code, err)
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

    # ---------------------------------------------------------------------------------- plumbing

    def _run(self, cwd: Path, *args: str, timeout: float = _LOCAL_TIMEOUT) -> tuple[int, str, str]:
        """Run git with our fixed options; (exit status, stdout, stderr)."""
        name, email = self.author
        identity = ("-c", f"user.name={name}", "-c", f"user.email={email}")
        try:
            code, out, err = git.Git(str(cwd)).execute(
                ["git", *_GIT_CONFIG, *identity, *args],
                with_extended_output=True,
                with_exceptions=False,
                kill_after_timeout=timeout,
                env=_GIT_ENV,
            )
        except (git.GitCommandNotFound, OSError) as exc:
            raise GitError(f"git {args[0]}: cannot run git: {exc}") from exc
        return int(code), str(out), str(err)

    def _git(self, cwd: Path, *args: str, timeout: float = _LOCAL_TIMEOUT) -> str:
        """Run git and return its stripped stdout; a failure raises GitError."""
        code, out, err = self._run(cwd, *args, timeout=timeout)
        if code != 0:
            raise _git_error(args, code, err)
        return out.strip()

    def _ok(self, cwd: Path, *args: str, timeout: float = _LOCAL_TIMEOUT) -> bool:
        """Run git for its exit status only (ancestry checks, ref existence, best-effort steps)."""
        return self._run(cwd, *args, timeout=timeout)[0] == 0

    def _has_remote(self) -> bool:
        return self.remote in self._git(self.path, "remote").split()

    def _base_ref(self) -> str:
        return f"{self.remote}/{self.base_branch}" if self._has_remote() else self.base_branch

    def _refresh_base(self) -> str:
        base_ref = self._base_ref()
        key = f"{self._common}\0{self.remote}\0{self.base_branch}"
        if self._has_remote() and time.monotonic() - _fetched_at.get(key, -math.inf) > FETCH_REUSE_SECONDS:
            self._git(
                self.path,
                "fetch",
                "--quiet",
                self.remote,
                f"+refs/heads/{self.base_branch}:refs/remotes/{self.remote}/{self.base_branch}",
                timeout=_NETWORK_TIMEOUT,
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
        """The worktree's own git directory (`.git/worktrees/<id>`): state outside the checkout."""
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
        out = self._git(cwd, "ls-remote", "--heads", remote, f"refs/heads/{branch}", timeout=_NETWORK_TIMEOUT)
        refs = {ln.partition("\t")[2] for ln in out.splitlines()}
        if f"refs/heads/{branch}" not in refs:  # ls-remote patterns match ref name tails, so check exactly
            return None
        self._git(
            cwd,
            "fetch",
            "--quiet",
            remote,
            f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
            timeout=_NETWORK_TIMEOUT,
        )
        return self._git(cwd, "rev-parse", f"refs/remotes/{remote}/{branch}")

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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _read_journal(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_journal(path: Path, entry: dict[str, Any]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves half a journal."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry, default=str))
    os.replace(tmp, path)


def _git_error(args: tuple[str, ...], code: int, stderr: str) -> GitError:
    text = stderr.strip()
    lowered = text.lower()
    retryable = any(fragment in lowered for fragment in _RETRYABLE_STDERR)
    return GitError(f"git {' '.join(args[:2])} failed ({code}): {text[-800:]}", retryable=retryable)


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


def _inside(root: Path, file: str) -> Path:
    """`root/file`, refusing absolute paths, `..`, symlinks leading outside, and `.git`."""
    relative = Path(file)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise GitError(f"{file!r} must be a relative path inside the worktree")
    if relative.parts[0] == ".git":
        raise GitError(f"{file!r} is inside .git")
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target.relative_to(base).parts[:1] == (".git",):
        raise GitError(f"{file!r} resolves to {target}, outside the worktree (symlink?)")
    if not target.is_file():
        raise GitError(f"{file!r} does not exist in the worktree")
    return target


def _format_of(path: Path) -> EditFormat:
    name = path.name.lower()
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".json"):
        return "json"
    if name.endswith(".toml"):
        return "toml"
    if name == ".env" or name.startswith(".env.") or name.endswith(".env"):
        return "env"
    raise GitError(f"cannot tell the format of {path.name}; set format: yaml|json|toml|env")


# ------------------------------------------------------------------------------------ key paths


def _key_parts(key: str) -> list[str]:
    r"""`a.b.0.c` → ["a", "b", "0", "c"]; `\.` keeps a dot inside a key (`kubernetes\.io/name`)."""
    parts = [p.replace("\0", ".") for p in key.replace("\\.", "\0").split(".")]
    if not key or any(p == "" for p in parts):
        raise GitError(f"bad key path {key!r}")
    return parts


def _step(node: Any, part: str, where: str) -> tuple[Any, Any]:
    """(container, key) for one path part; lists take an integer index or a `field=value`
    selector naming exactly one item (`containers.name=cart`), so a fix edits the alerting
    container, not whichever happens to come first."""
    if isinstance(node, list) and "=" in part:
        field, _, wanted = part.partition("=")
        hits = [i for i, item in enumerate(node) if isinstance(item, dict) and str(item.get(field)) == wanted]
        if len(hits) != 1:
            found = "no item" if not hits else f"{len(hits)} items"
            raise GitError(f"{where}: {found} with {field}={wanted!r} in the list")
        return node, hits[0]
    if isinstance(node, list):
        try:
            index = int(part)
        except ValueError:
            raise GitError(f"{where}: {part!r} indexes a list; use a number") from None
        if not -len(node) <= index < len(node):
            raise GitError(f"{where}: index {index} out of range (list has {len(node)} items)")
        return node, index
    if isinstance(node, dict):
        if part not in node:
            raise GitError(f"{where}: key {part!r} not found")
        return node, part
    raise GitError(f"{where}: cannot descend into a {type(node).__name__} at {part!r}")


def _locate(root: Any, key: str, where: str) -> tuple[Any, Any]:
    parts = _key_parts(key)
    node = root
    for part in parts[:-1]:
        container, k = _step(node, part, where)
        node = container[k]
    return _step(node, parts[-1], where)


# ---------------------------------------------------------------------------------- formats


def _guess_yaml_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file uses them, so a dump keeps them.

    Sequence indent counts from the parent key to the item's content: `key:\n  - a` is (4, 2).
    """
    mapping: int | None = None
    sequence: int | None = None
    offset: int | None = None
    parent: int | None = None  # indent of the previous line when it was a bare `key:`
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        lead = len(line) - len(line.lstrip(" "))
        if parent is not None and lead > parent:
            if stripped.startswith("- ") and sequence is None:
                offset = lead - parent
                sequence = offset + 2 + len(stripped[2:]) - len(stripped[2:].lstrip(" "))
            elif not stripped.startswith("-") and mapping is None:
                mapping = lead - parent
        elif parent is not None and stripped.startswith("- ") and lead == parent and sequence is None:
            offset, sequence = 0, 2 + len(stripped[2:]) - len(stripped[2:].lstrip(" "))
        parent = lead if stripped.endswith(":") and not stripped.startswith("- ") else None
        if mapping is not None and sequence is not None:
            break
    mapping = mapping or 2
    return mapping, sequence or max(mapping, 2), offset or 0


def _edit_yaml(text: str, key: str, compute: Callable[[Any], Any], where: str) -> tuple[str, Any, Any]:
    mapping, sequence, offset = _guess_yaml_indent(text)
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.explicit_start = text.lstrip().startswith("---")
    docs = list(yaml.load_all(text))
    hits = []
    for doc in docs:
        try:
            hits.append(_locate(doc, key, where))
        except GitError:
            continue
    if not hits:
        _locate(docs[0] if docs else None, key, where)  # raises with the precise reason
    if len(hits) > 1:
        raise GitError(f"{where}: the key exists in {len(hits)} documents of the file; ambiguous")
    container, k = hits[0]
    old = container[k]
    new = compute(old)
    container[k] = _keep_yaml_style(old, new)
    out = _StringSink()
    if len(docs) == 1:
        yaml.dump(docs[0], out)
    else:
        yaml.dump_all(docs, out)
    return out.text(), old, new


def _keep_yaml_style(old: Any, new: Any) -> Any:
    """A new string keeps the old one's quoting (ruamel's scalar string subclasses)."""
    if isinstance(new, str) and isinstance(old, str) and type(old) is not str:
        return type(old)(new)
    return new


class _StringSink:
    def __init__(self) -> None:
        self._parts: list[str] = []

    def write(self, data: str | bytes) -> None:
        self._parts.append(data.decode() if isinstance(data, bytes) else data)

    def text(self) -> str:
        return "".join(self._parts)


def _edit_json(text: str, key: str, compute: Callable[[Any], Any], where: str) -> tuple[str, Any, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GitError(f"{where}: not valid JSON: {exc}") from exc
    container, k = _locate(data, key, where)
    old = container[k]
    new = compute(old)
    container[k] = new
    indent: int | str | None = None
    m = re.search(r"^[{\[][^\n]*\n([ \t]+)\S", text, re.MULTILINE)
    if m:
        ws = m.group(1)
        indent = ws if "\t" in ws else len(ws)
    dumped = json.dumps(data, indent=indent, ensure_ascii=False)
    if indent is None and ", " not in text and ": " not in text:
        dumped = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return dumped + ("\n" if text.endswith("\n") else ""), old, new


def _edit_toml(text: str, key: str, compute: Callable[[Any], Any], where: str) -> tuple[str, Any, Any]:
    try:
        doc = tomlkit.parse(text)
    except tomlkit.exceptions.TOMLKitError as exc:
        raise GitError(f"{where}: not valid TOML: {exc}") from exc
    container, k = _locate(doc, key, where)
    old = _plain(container[k])
    new = compute(old)
    container[k] = new
    return tomlkit.dumps(doc), old, new


_ENV_LINE = re.compile(
    r"^(?P<lead>\s*(?:export\s+)?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<eq>\s*=\s*)(?P<rest>.*)$"
)


def _edit_env(text: str, key: str, compute: Callable[[Any], Any], where: str) -> tuple[str, Any, Any]:
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        m = _ENV_LINE.match(body)
        if m is None or m.group("name") != key:
            continue
        raw_value, quote, comment = _split_env_value(m.group("rest"))
        new = compute(raw_value)
        new_text = _env_scalar(new)
        if not quote and re.search(r"[\s#'\"\\$`]", new_text):
            quote = '"'
        if quote == '"':
            new_text = new_text.replace("\\", "\\\\").replace('"', '\\"')
        elif quote == "'" and "'" in new_text:
            raise GitError(f"{where}: value contains a single quote; cannot keep the '…' quoting")
        ending = line[len(body) :]
        lines[i] = f"{m.group('lead')}{key}{m.group('eq')}{quote}{new_text}{quote}{comment}{ending}"
        return "".join(lines), raw_value, new
    raise GitError(f"{where}: variable {key!r} not found")


def _split_env_value(rest: str) -> tuple[str, str, str]:
    """(value, quote character or "", trailing comment incl. its leading space)."""
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        end = rest.find(quote, 1)
        while quote == '"' and end > 0 and rest[end - 1] == "\\":
            end = rest.find(quote, end + 1)
        if end > 0:
            inner = rest[1:end]
            if quote == '"':
                inner = inner.replace('\\"', '"').replace("\\\\", "\\")
            return inner, quote, rest[end + 1 :]
    m = re.search(r"\s+#", rest)
    if m:
        return rest[: m.start()], "", rest[m.start() :]
    return rest.rstrip(), "", rest[len(rest.rstrip()) :]


def _env_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise GitError("a .env value must be a scalar")
    return str(value)


# ---------------------------------------------------------------------------------- numbers

_QUANTITY = re.compile(r"^(?P<sign>[-+]?)(?P<num>\d+(?:\.\d+)?|\.\d+)(?P<unit>[A-Za-z%]*)$")


_UNIT_FACTORS = {
    "": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50,
}  # fmt: skip


def _cap_in_unit(where: str, max_value: float | str, unit: str) -> float:
    """The cap expressed in the value's unit; a bare number already is."""
    if not isinstance(max_value, str):
        return float(max_value)
    m = _QUANTITY.match(max_value.strip())
    if m is None:
        raise GitError(f"{where}: bad max_value {max_value!r}")
    cap_unit = m.group("unit")
    if cap_unit not in _UNIT_FACTORS or unit not in _UNIT_FACTORS:
        raise GitError(f"{where}: cannot compare {unit or 'a plain number'} with max_value {max_value!r}")
    return float(m.group("sign") + m.group("num")) * _UNIT_FACTORS[cap_unit] / _UNIT_FACTORS[unit]


def _scaled(where: str, old: Any, scale: float, max_value: float | str | None) -> Any:
    """`old` times `scale`, in old's type and unit; integers round up; capped at `max_value`."""
    if isinstance(old, bool):
        raise GitError(f"{where}: cannot scale a boolean")
    if isinstance(old, (int, float)):
        number, unit, as_string = float(old), "", False
        integral = isinstance(old, int)
    elif isinstance(old, str):
        m = _QUANTITY.match(old.strip())
        if m is None:
            raise GitError(f"{where}: cannot scale {old!r}: not a number with an optional unit")
        number = float(m.group("sign") + m.group("num"))
        unit, as_string = m.group("unit"), True
        integral = "." not in m.group("num")
    else:
        raise GitError(f"{where}: cannot scale a {type(old).__name__}")
    result = number * scale
    if integral:
        result = float(math.ceil(round(result, 9)))  # 3 x 1.1 = 3.3000000000000003 → 4, not 5
    else:
        result = round(result, 9)
    if max_value is not None:
        limit = _cap_in_unit(where, max_value, unit)
        cap = float(math.floor(limit)) if integral else limit
        if result > cap:
            result = cap
        if (scale > 1 and result <= number) or (scale < 1 and result >= number):
            shown = max_value if isinstance(max_value, str) else f"{max_value:g}{unit}"
            raise GitError(
                f"{where}: {old!r} is already at or beyond max_value {shown}: scaling would change nothing"
            )
    number_text = str(int(result)) if integral else repr(result)
    if as_string:
        return f"{number_text}{unit}"
    return int(result) if integral else result


def _checked(where: str, value: Any, max_value: float | str | None) -> Any:
    """A value to set, refused when its number exceeds `max_value`."""
    if max_value is None or isinstance(value, bool):
        return value
    number: float | None = None
    unit = ""
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and (m := _QUANTITY.match(value.strip())):
        number, unit = float(m.group("sign") + m.group("num")), m.group("unit")
    if number is not None and number > _cap_in_unit(where, max_value, unit):
        raise GitError(f"{where}: {value!r} exceeds max_value {max_value}")
    return value


def _plain(value: Any) -> Any:
    """Plain Python data (for results and history), not ruamel/tomlkit wrapper types."""
    if isinstance(value, tomlkit.items.Item):
        return _plain(value.unwrap())
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (dict, CommentedMap)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, CommentedSeq)):
        return [_plain(v) for v in value]
    return value
