"""How selfheal runs git, shared by the repository operations and the history reader.

One place decides the options, environment and timeouts of every git process, so no caller can
forget them: hooks disabled, no signing, no credential prompts, a C locale for parseable errors,
and a kill after a timeout, so a worker never blocks on a terminal or a hung remote and never
runs code from a repository it reads or fixes. Failures become GitError; `retryable` marks the
ones another attempt can cure (network, lock contention), everything else needs a human.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import git

from connectors.base import ConnectorError

#: Seconds before a git process talking to a remote (fetch, push, ls-remote) is killed.
NETWORK_TIMEOUT = 120.0
#: Seconds before a local git process is killed.
LOCAL_TIMEOUT = 60.0
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
#: Options for every git call: never run hooks from the repo, never sign, never prompt.
GIT_CONFIG = (
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
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", "LC_ALL": "C"}
_CREDENTIALS_IN_URL = re.compile(r"(\w+://)[^/@\s]+@")


class GitError(ConnectorError):
    """A git operation failed; `retryable` says whether another attempt can help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(_CREDENTIALS_IN_URL.sub(r"\1***@", message), retryable=retryable)


def run(
    cwd: Path,
    *args: str,
    timeout: float = LOCAL_TIMEOUT,
    config: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[int, str, str]:
    """Run git in `cwd` with the fixed options (plus `config`, more `-c` pairs, and `env`, e.g. a
    scratch GIT_INDEX_FILE); (exit status, stdout, stderr), each without its final newline. Only a
    git that cannot start raises."""
    try:
        code, out, err = git.Git(str(cwd)).execute(
            ["git", *GIT_CONFIG, *config, *args],
            with_extended_output=True,
            with_exceptions=False,
            kill_after_timeout=timeout,
            env={**GIT_ENV, **(env or {})},
        )
    except (git.GitCommandNotFound, OSError) as exc:
        raise GitError(f"git {args[0]}: cannot run git: {exc}") from exc
    return int(code), str(out), str(err)


def git_error(args: Sequence[str], code: int, stderr: str) -> GitError:
    """The GitError for a failed command, retryable when its stderr says so."""
    text = stderr.strip()
    lowered = text.lower()
    retryable = any(fragment in lowered for fragment in _RETRYABLE_STDERR)
    return GitError(f"git {' '.join(args[:2])} failed ({code}): {text[-800:]}", retryable=retryable)


def ls_remote_head(out: str, branch: str) -> str | None:
    """The commit of exactly `refs/heads/<branch>` in `git ls-remote` output, or None: ls-remote's
    patterns match ref name tails, so `refs/heads/x/<branch>` may come back as well."""
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None
