"""Propose one file to a repository as a branch: a drafted playbook for an SRE to review and merge.

The commit is built with plumbing on a scratch index (no worktree, the clone's checkout untouched)
on top of the remote's base branch, carrying a `Selfheal-Draft: <incident id>` trailer, and pushed
to a new branch without force. Idempotent: when the branch already exists on the remote with our
trailer, nothing is made or pushed again, so a retried activity never creates a second branch or
commit; a branch of that name that is not ours is an error for a human, never overwritten.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from connectors.git.process import NETWORK_TIMEOUT, GitError, git_error, ls_remote_head, run
from connectors.git.repo import GitRepo, validate_incident_id

DRAFT_TRAILER = "Selfheal-Draft"
DRAFT_BRANCH_PREFIX = "selfheal/draft-"

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class Published:
    """Where the file was proposed: the branch, its commit, and whether this call pushed it."""

    branch: str
    commit: str
    pushed: bool
    #: The remote the branch is on ("" for a repository without one: the branch is local).
    remote: str
    #: The base branch already holds the file with this content: nothing to propose.
    already_merged: bool = False


def draft_branch(incident_id: str) -> str:
    return DRAFT_BRANCH_PREFIX + validate_incident_id(incident_id)


def publish_file(
    repo: GitRepo, *, incident_id: str, path: str, content: str, message: str, when: int
) -> Published:
    """Push branch `selfheal/draft-<incident>` holding `content` at `path` (relative to the
    repository) on top of the base branch. `when` (epoch seconds) dates the commit, so a retry
    that must rebuild it makes the same commit on the same base."""
    branch = draft_branch(incident_id)
    if not path or path.startswith("/") or ".." in path.split("/") or "\\" in path:
        raise GitError(f"path {path!r} must be relative to the repository and stay inside it")
    key = str(Path(repo.repo.common_dir).resolve())
    with _locks_guard:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        return _publish(repo, branch, incident_id, path, content, message, when)


def _publish(
    repo: GitRepo, branch: str, incident_id: str, path: str, content: str, message: str, when: int
) -> Published:
    cwd = repo.path
    has_remote = repo.remote in _git(cwd, "remote").split()
    if has_remote:
        existing = _remote_branch(cwd, repo.remote, branch)
        if existing is not None:
            return Published(branch, _ours(cwd, existing, incident_id, branch), False, repo.remote)
        _git(
            cwd,
            "fetch",
            "--quiet",
            repo.remote,
            f"+refs/heads/{repo.base_branch}:refs/remotes/{repo.remote}/{repo.base_branch}",
            timeout=NETWORK_TIMEOUT,
        )
        base = _git(cwd, "rev-parse", "--verify", f"refs/remotes/{repo.remote}/{repo.base_branch}^{{commit}}")
    else:
        code, local, _ = run(cwd, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}")
        if code == 0:
            return Published(branch, _ours(cwd, local.strip(), incident_id, branch), False, "")
        base = _git(cwd, "rev-parse", "--verify", f"refs/heads/{repo.base_branch}^{{commit}}")
    commit, changed = _commit(repo, base, path, content, message, incident_id, when)
    if not changed:
        return Published(branch, base, False, repo.remote if has_remote else "", already_merged=True)
    if not has_remote:
        _git(cwd, "update-ref", f"refs/heads/{branch}", commit, "")
        return Published(branch, commit, True, "")
    code, out, err = run(
        cwd, "push", "--porcelain", repo.remote, f"{commit}:refs/heads/{branch}", timeout=NETWORK_TIMEOUT
    )
    if code != 0:
        # Someone (an earlier attempt whose answer was lost) made the branch meanwhile: ours or not?
        existing = _remote_branch(cwd, repo.remote, branch)
        if existing is not None:
            return Published(branch, _ours(cwd, existing, incident_id, branch), False, repo.remote)
        raise git_error(("push", repo.remote), code, err or out)
    return Published(branch, commit, True, repo.remote)


def _commit(
    repo: GitRepo, base: str, path: str, content: str, message: str, incident_id: str, when: int
) -> tuple[str, bool]:
    """A commit on `base` whose tree is base's with `path` set to `content`; (sha, changed)."""
    cwd = repo.path
    name, email = repo.author
    with tempfile.TemporaryDirectory(prefix="selfheal-publish-") as tmp:
        blob_file = Path(tmp) / "blob"
        blob_file.write_text(content, encoding="utf-8")
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(cwd, "read-tree", base, env=env)
        blob = _git(cwd, "hash-object", "-w", "--no-filters", str(blob_file))
        _git(cwd, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = _git(cwd, "write-tree", env=env)
    if tree == _git(cwd, "rev-parse", f"{base}^{{tree}}"):
        return base, False
    stamp = f"{when} +0000"
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
    }
    body = f"{message.strip()}\n\n{DRAFT_TRAILER}: {incident_id}\n"
    return _git(cwd, "commit-tree", tree, "-p", base, "-m", body, env=env), True


def _remote_branch(cwd: Path, remote: str, branch: str) -> str | None:
    """The remote branch's commit, fetched so it can be read; None when it does not exist."""
    out = _git(cwd, "ls-remote", "--heads", remote, f"refs/heads/{branch}", timeout=NETWORK_TIMEOUT)
    sha = ls_remote_head(out, branch)
    if sha is None:
        return None
    _git(
        cwd,
        "fetch",
        "--quiet",
        remote,
        f"+refs/heads/{branch}:refs/remotes/{remote}/{branch}",
        timeout=NETWORK_TIMEOUT,
    )
    return sha


def _ours(cwd: Path, commit: str, incident_id: str, branch: str) -> str:
    """`commit` when it carries our draft trailer; a branch someone else made is not overwritten."""
    trailers = _git(cwd, "log", "-1", "--format=%(trailers:key=" + DRAFT_TRAILER + ",valueonly)", commit)
    if incident_id not in trailers.split():
        raise GitError(f"branch {branch} exists and is not selfheal's draft for incident {incident_id}")
    return commit


def _git(cwd: Path, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> str:
    code, out, err = run(cwd, *args, timeout=timeout, env=env)
    if code != 0:
        raise git_error(args, code, err)
    return out.strip()
