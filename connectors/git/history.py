"""Read-only history of one repository: commits with their diff stats, `log`, `show`, `diff`.

What investigations read (suspect changes before an alert, an agent's git tools), kept apart
from `repo`, which changes repositories. Every git call goes through `connectors.git.process`
(worker environment, no hooks or prompts, timeouts). Revisions and paths arrive from alerts,
settings or a language model, so they are checked first (`check_rev`, `check_path`: nothing
that reads as an option, no `..`), and a revision is resolved to a commit id before any other
command sees it. Nothing here writes to the repository or its work tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from connectors.git.process import LOCAL_TIMEOUT, GitError, git_error, run

_REV = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/@{}~^-]{0,199}$")
#: Field and record separators of `commits`' one `git log` (never in a sha, a date or a numstat line).
_FIELD, _END = "\x1f", "\x1e"


class NotARepository(GitError):
    """The path is not the top of a git repository (work tree root, bare repository or git dir)."""


class InvalidInput(GitError, ValueError):
    """A revision or path refused before git sees it, or a revision that names no commit."""


def check_rev(rev: str) -> str:
    """`rev` when it is a plain revision (commit id, branch, tag, `HEAD~2`…): no option, no range."""
    if not _REV.match(rev) or ".." in rev:
        raise InvalidInput(f"invalid git revision {rev!r}: use a commit id, branch or tag")
    return rev


def check_path(path: str) -> str:
    """`path` when it is relative to the repository root and stays inside it."""
    if not path or path.startswith(("-", "/")) or "\\" in path or "\x00" in path:
        raise InvalidInput(f"invalid path {path!r}: use a path relative to the repository root")
    if any(part in ("..", "") for part in path.rstrip("/").split("/")):
        raise InvalidInput(f"invalid path {path!r}: no '..' or empty components")
    return path


@dataclass
class Commit:
    """One commit and what it changed against its first parent (everything, for a root commit).

    Stats are GitPython's `Commit.stats` view: no rename detection, binary files count 0, paths
    as git prints them (unusual ones C-quoted, so one path is one line).
    """

    sha: str
    committed_at: datetime  # UTC
    author_name: str
    author_email: str
    message: str
    paths: list[str] = field(default_factory=list)
    insertions: int = 0
    deletions: int = 0

    @property
    def summary(self) -> str:
        """The message's first line."""
        return self.message.split("\n", 1)[0]


class GitHistory:
    """Reads one repository's history; cheap to make (one git call), holds no open handle."""

    def __init__(self, path: Path, *, timeout: float = LOCAL_TIMEOUT) -> None:
        self.path = Path(path)
        self.timeout = timeout
        # Only the repository's top counts (as for GitPython's `Repo(path)`): a directory inside
        # some other repository is not the configured repository.
        if not self.path.is_dir():
            raise NotARepository(f"{path} is not a git repository")
        code, prefix, _ = run(self.path, "rev-parse", "--show-prefix", timeout=timeout)
        if code != 0 or prefix.strip():
            raise NotARepository(f"{path} is not a git repository")

    def head(self) -> str | None:
        """The commit id HEAD points at; None in a repository without commits."""
        return self._commit_id("HEAD")

    def resolve(self, rev: str) -> str:
        """The commit id `rev` names (checked with `check_rev` first)."""
        sha = self._commit_id(check_rev(rev))
        if sha is None:
            raise InvalidInput(f"{rev!r} names no commit in {self.path.name}")
        return sha

    def commits(
        self,
        rev: str = "HEAD",
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        max_count: int | None = None,
    ) -> list[Commit]:
        """Commits reachable from `rev`, newest first as `git log` lists them, each with its diff
        stats, all from ONE git process (GitPython's `Commit.stats` runs a `git diff` per commit:
        hundreds of processes per incident in a busy window).

        `since` and `until` are `git log`'s committer-date limits; `git log` may stop at the first
        commit older than `since` or list a few just outside, so callers filter on `committed_at`.
        """
        args = [f"--max-count={max_count}"] if max_count is not None else []
        if since is not None:
            args.append(f"--since={since.isoformat()}")
        if until is not None:
            args.append(f"--until={until.isoformat()}")
        fmt = _FIELD.join(("%x00%H", "%ct", "%an", "%ae", "%B")) + "%x1e"
        out = self._git(
            "log",
            *args,
            "--numstat",
            "--no-renames",
            "--diff-merges=first-parent",
            f"--format={fmt}",
            self.resolve(rev),
            "--",
        )
        commits: list[Commit] = []
        for record in out.split("\x00")[1:]:
            head, _, body = record.rpartition(_END)
            sha, stamp, name, email, message = head.split(_FIELD, 4)
            commit = Commit(
                sha=sha.strip(),
                committed_at=datetime.fromtimestamp(int(stamp), UTC),
                author_name=name,
                author_email=email,
                message=message,
            )
            for line in body.splitlines():
                added, sep1, rest = line.partition("\t")
                deleted, sep2, path = rest.partition("\t")
                if not (sep1 and sep2):
                    continue
                commit.paths.append(path)
                commit.insertions += int(added) if added.isdigit() else 0
                commit.deletions += int(deleted) if deleted.isdigit() else 0
            commits.append(commit)
        return commits

    def log(self, rev: str, *, path: str | None = None, max_count: int = 20) -> str:
        """One line per commit reachable from `rev` (and touching `path`), newest first:
        `<short sha> <committer date> <author>: <subject>`; "" when none."""
        sha = self.resolve(rev)
        args = [f"--max-count={max(1, max_count)}", "--format=%h %cI %an: %s", sha, "--"]
        return self._git("log", *args, *_paths(path))

    def show(self, rev: str, *, path: str | None = None) -> str:
        """The commit `rev` names: header, full message, stat and patch (of `path` only, if given)."""
        sha = self.resolve(rev)
        fmt = "--format=commit %H%nAuthor: %an%nDate: %cI%n%n%B"
        return self._git("show", "--no-ext-diff", "--stat", "--patch", fmt, sha, "--", *_paths(path))

    def patch(self, rev: str, *, max_lines: int = 80, max_line_chars: int = 300) -> str:
        """The changed lines of commit `rev` against its first parent, as `git show` prints its patch
        (file headers, hunks, no commit header), at most `max_lines` lines of at most
        `max_line_chars` characters each; a last line says how many were left out."""
        sha = self.resolve(rev)
        out = self._git(
            "show",
            "--no-ext-diff",
            "--no-color",
            "--diff-merges=first-parent",
            "--format=",
            "--patch",
            sha,
            "--",
        )
        lines = out.lstrip("\n").splitlines()
        kept = [
            line if len(line) <= max_line_chars else line[:max_line_chars] + "…" for line in lines[:max_lines]
        ]
        if len(lines) > max_lines:
            kept.append(f"… [{len(lines) - max_lines} more diff lines truncated]")
        return "\n".join(kept)

    def diff(self, base: str, head: str, *, path: str | None = None) -> str:
        """Stat and patch from commit `base` to commit `head` (of `path` only, if given)."""
        a, b = self.resolve(base), self.resolve(head)
        return self._git("diff", "--no-ext-diff", "--stat", "--patch", a, b, "--", *_paths(path))

    def _commit_id(self, rev: str) -> str | None:
        code, out, err = run(
            self.path,
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            f"{rev}^{{commit}}",
            timeout=self.timeout,
        )
        if code == 1 and not err.strip():
            return None  # --quiet: the revision names nothing (an unborn HEAD, an unknown name)
        if code != 0:
            raise git_error(("rev-parse", rev), code, err)
        return out.strip()

    def _git(self, *args: str) -> str:
        """git's stdout (without its final newline, invalid UTF-8 replaced); a failure raises GitError."""
        code, out, err = run(self.path, *args, timeout=self.timeout)
        if code != 0:
            raise git_error(args, code, err)
        return out.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _paths(path: str | None) -> tuple[str, ...]:
    return () if path is None else (check_path(path),)
