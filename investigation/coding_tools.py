"""The coding agent's tools as the worker runs them: files of one worktree, and its tests in a sandbox.

The model chooses every argument, so every path is confined before it is touched: relative, no
`..`, nothing under `.git`, and resolved (symlinks followed) still inside the worktree; a write
never goes through a symlink. The worktree itself must be one the worker made for the coding
agent (`<worktrees_dir>/coding/…`), so even a forged history could not point the tools elsewhere.
Tests run only under bubblewrap (no network, only system directories, the repository's declared
toolchain paths and the worktree, secrets covered): code a model wrote never runs unconfined, so
where bubblewrap cannot run the tests are not run. Their output is redacted (the worker's own
secret values too) before the model or a ticket sees it.

Why a registry: as with the investigator's live tools, the durable agent's tools are plain
functions pydantic-ai turns into activities, so the worker registers a `CodingRuntime` per task
queue and the tools look theirs up; no path or secret of the worker travels through history.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from temporalio import activity

from models.plan import CommandAction
from pages.redact import redact

if TYPE_CHECKING:
    from pydantic_ai.models import Model

#: Where the worker makes coding-agent worktrees, under its worktrees directory.
CODING_DIR = "coding"
MAX_LIST_ENTRIES = 400
MAX_SEARCH_HITS = 200
MAX_READ_LINES = 2000
MAX_PATTERN_CHARS = 500
#: Files larger than this are not searched (generated or vendored data, not code to fix).
MAX_SEARCH_FILE_BYTES = 1_000_000
#: The agent edits and reruns within seconds: no bytecode cache may outlive an edit.
STALE_CACHE_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


class CodingToolError(ValueError):
    """A tool call the model made that is refused; the message goes back to the model."""


@dataclass
class CodingRuntime:
    """What the coding agent's activities need on this worker, built by the app from its settings."""

    model: Callable[[], Model]
    worktrees_dir: Path
    #: Repository name → read-only toolchain paths its tests need (`remediation.repos.<n>.sandbox_paths`).
    sandbox_paths: Mapping[str, Sequence[Path]] = field(default_factory=dict)
    #: What a sandboxed command never sees (data dir, config dir, home).
    sandbox_hidden: Sequence[Path] = ()
    #: Secret values redacted verbatim from every output.
    secret_values: Sequence[str] = ()
    memory_mb: int = 1024
    max_file_bytes: int = 200_000


_RUNTIMES: dict[str, CodingRuntime] = {}


def register_coding_runtime(task_queue: str, runtime: CodingRuntime) -> CodingRuntime:
    _RUNTIMES[task_queue] = runtime
    return runtime


def current_coding_runtime() -> CodingRuntime:
    """The runtime of the task queue the running activity was scheduled on."""
    if not activity.in_activity():
        raise RuntimeError("the coding agent's tools only run inside a worker activity")
    queue = activity.info().task_queue
    runtime = _RUNTIMES.get(queue)
    if runtime is None:
        raise RuntimeError(f"no coding agent runtime registered for task queue {queue!r}")
    return runtime


def workspace_root(runtime: CodingRuntime, worktree: str) -> Path:
    """The worktree, once it is a directory the worker made for the coding agent."""
    base = (runtime.worktrees_dir / CODING_DIR).resolve()
    root = Path(worktree).resolve()
    if root.parent != base or not (root / ".git").exists():
        raise RuntimeError(f"{worktree} is not a coding-agent worktree of this worker ({base})")
    return root


# ------------------------------------------------------------------------------ confinement


def confined(root: Path, path: str, *, write: bool = False) -> Path:
    """`path` inside the worktree `root`, or CodingToolError saying why not.

    Refused: empty or absolute paths, `..`, anything under `.git`, and a path whose symlinks lead
    outside the worktree (or into `.git`); for a write, also a symlink as the file itself."""
    if not path or "\x00" in path:
        raise CodingToolError("the path is empty")
    pure = PurePosixPath(path)
    if pure.is_absolute() or path.startswith("~"):
        raise CodingToolError(f"{path!r} is absolute: paths are relative to the repository root")
    parts = [p for p in pure.parts if p != "."]
    if ".." in parts:
        raise CodingToolError(f"{path!r} leaves the repository ('..' is not allowed)")
    if any(p.lower() == ".git" for p in parts):
        raise CodingToolError(f"{path!r} is inside .git, which the agent may not read or change")
    candidate = root.joinpath(*parts) if parts else root
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise CodingToolError(f"{path!r} leads outside the repository (through a symlink)")
    if any(p.lower() == ".git" for p in resolved.relative_to(root).parts):
        raise CodingToolError(f"{path!r} leads into .git (through a symlink)")
    if write and candidate.is_symlink():
        raise CodingToolError(f"{path!r} is a symlink: the agent does not write through symlinks")
    return candidate


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix() or "."


def _text(path: Path, shown: str) -> str:
    if not path.is_file():
        raise CodingToolError(f"{shown!r} is not a file")
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise CodingToolError(f"{shown!r} is a binary file")
    return data.decode("utf-8", errors="replace")


# ------------------------------------------------------------------------------------ files


def read_file(root: Path, path: str, offset: int = 1, limit: int = 400) -> str:
    """Lines `offset`… (1-based) of a file, numbered."""
    target = confined(root, path)
    lines = _text(target, path).splitlines()
    start = max(1, offset)
    count = max(1, min(limit, MAX_READ_LINES))
    shown = lines[start - 1 : start - 1 + count]
    body = "\n".join(f"{n:>5}  {line}" for n, line in enumerate(shown, start))
    rest = len(lines) - (start - 1 + len(shown))
    tail = f"\n… {rest} more lines; read again with offset={start + len(shown)}" if rest > 0 else ""
    return f"{path} ({len(lines)} lines)\n{body}{tail}"


def _walk(root: Path, base: Path) -> list[Path]:
    """Files under `base` (not following symlinked directories, skipping .git), sorted."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        here = Path(dirpath)
        found += [here / name for name in sorted(filenames)]
        if len(found) > 20 * MAX_LIST_ENTRIES:
            break
    return found


def list_files(root: Path, path: str = ".") -> str:
    """The files under a directory of the worktree, one path per line."""
    base = confined(root, path)
    if not base.is_dir():
        raise CodingToolError(f"{path!r} is not a directory")
    files = [_relative(root, f) for f in _walk(root, base)]
    head = files[:MAX_LIST_ENTRIES]
    more = f"\n… {len(files) - len(head)} more; list a subdirectory" if len(files) > len(head) else ""
    return ("\n".join(head) or "(no files)") + more


def search_files(root: Path, pattern: str, path: str = ".") -> str:
    """Lines matching a regular expression (Python syntax) in the files under `path`."""
    if not pattern or len(pattern) > MAX_PATTERN_CHARS:
        raise CodingToolError(f"the pattern must have 1 to {MAX_PATTERN_CHARS} characters")
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise CodingToolError(f"invalid regular expression: {err}") from err
    base = confined(root, path)
    files = [base] if base.is_file() else _walk(root, base)
    hits: list[str] = []
    for file in files:
        if file.is_symlink() or not file.is_file() or file.stat().st_size > MAX_SEARCH_FILE_BYTES:
            continue
        data = file.read_bytes()
        if b"\x00" in data[:8192]:
            continue
        for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if regex.search(line):
                hits.append(f"{_relative(root, file)}:{n}: {line[:300]}")
                if len(hits) >= MAX_SEARCH_HITS:
                    return "\n".join(hits) + f"\n… stopped at {MAX_SEARCH_HITS} matches; narrow the search"
    return "\n".join(hits) or "no match"


def edit_file(root: Path, path: str, old: str, new: str, *, max_bytes: int) -> str:
    """Replace the one occurrence of `old` with `new` in an existing file."""
    target = confined(root, path, write=True)
    text = _text(target, path)
    if not old:
        raise CodingToolError("old is empty: give the exact text to replace (or use write_file)")
    count = text.count(old)
    if count == 0:
        raise CodingToolError(
            f"old text not found in {path!r}: read the file and copy the text exactly"
            " (if you just made this edit, it is already applied)"
        )
    if count > 1:
        raise CodingToolError(f"old text occurs {count} times in {path!r}: include more context")
    updated = text.replace(old, new, 1)
    _write(target, updated, path, max_bytes)
    return f"edited {path}: replaced {len(old.splitlines()) or 1} line(s) with {len(new.splitlines())}"


def write_file(root: Path, path: str, content: str, *, max_bytes: int) -> str:
    """Create or overwrite a file (its parent directories are made)."""
    target = confined(root, path, write=True)
    if target.is_dir():
        raise CodingToolError(f"{path!r} is a directory")
    existed = target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    # The parents just made cannot be symlinks, but one that existed may have been swapped since.
    if not target.parent.resolve().is_relative_to(root):
        raise CodingToolError(f"{path!r} leads outside the repository")
    _write(target, content, path, max_bytes)
    return f"{'overwrote' if existed else 'created'} {path} ({len(content.splitlines())} lines)"


def _write(target: Path, text: str, shown: str, max_bytes: int) -> None:
    data = text.encode()
    if len(data) > max_bytes:
        raise CodingToolError(f"{shown!r} would be {len(data):,} bytes; at most {max_bytes:,} may be written")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


# ------------------------------------------------------------------------------------ tests


@dataclass(frozen=True)
class TestRun:
    """The verdict and output of the repository's test commands in the worktree."""

    __test__ = False  # not a pytest class, despite the name

    ran: bool
    passed: bool
    output: str


def run_tests(
    root: Path,
    tests: Sequence[CommandAction],
    runtime: CodingRuntime,
    repo: str,
    *,
    emails: bool = False,
) -> TestRun:
    """Run each test command in order (stopping at the first failure) under bubblewrap, the worktree
    the only writable place and no network; the output redacted."""
    from connectors.commands import bwrap_available, run_command

    if not tests:
        return TestRun(ran=False, passed=False, output="no test command is configured for this repository")
    usable, why = bwrap_available()
    if not usable:
        return TestRun(
            ran=False,
            passed=False,
            output=f"tests not run: bubblewrap cannot run on this worker ({why}); code an agent wrote"
            " runs only inside it",
        )
    sections: list[str] = []
    passed = True
    for action in tests:
        cwd = confined(root, action.cwd) if action.cwd not in ("", ".") else root
        result = run_command(
            action.argv,
            cwd=cwd,
            # An edit within the same second as the last run, keeping the file's size, would
            # otherwise run Python's stale bytecode cache.
            env={**STALE_CACHE_ENV, **action.env},
            timeout=action.timeout_seconds,
            sandbox=True,
            writable=root,
            readable=list(runtime.sandbox_paths.get(repo, ())),
            hidden=list(runtime.sandbox_hidden),
            memory_mb=runtime.memory_mb,
        )
        verdict = "timed out" if result.timed_out else f"exit {result.returncode}"
        output = "\n".join(part.rstrip() for part in (result.stdout, result.stderr) if part.strip())
        sections.append(f"$ {' '.join(action.argv)}  ({verdict}, {result.duration_seconds:.1f} s)\n{output}")
        if not result.ok:
            passed = False
            break
    text = redact("\n\n".join(sections), emails=emails, known=list(runtime.secret_values))
    return TestRun(ran=True, passed=passed, output=text)
