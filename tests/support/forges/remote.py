"""A bare git repository as a forge's storage: branch heads, mergeability and real merge commits
(`git merge-tree --write-tree`, then `commit-tree` and a compare-and-swap `update-ref`), so a merge
in a fake lands on the remote exactly as a forge's would."""

from __future__ import annotations

import subprocess
from pathlib import Path

IDENTITY = ["-c", "user.name=Forge", "-c", "user.email=forge@example.com"]


class GitRemote:
    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *IDENTITY, *args], cwd=self.path, capture_output=True, text=True, check=check
        )

    def head(self, branch: str) -> str | None:
        out = self.git("rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}", check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    def ahead(self, base: str, head: str) -> int:
        """Commits on `head` that `base` lacks."""
        return int(self.git("rev-list", "--count", f"{base}..{head}").stdout.strip())

    def _tree(self, base: str, head: str) -> str | None:
        out = self.git("merge-tree", "--write-tree", base, head, check=False)
        return out.stdout.split()[0] if out.returncode == 0 else None

    def mergeable(self, base_branch: str, head: str) -> bool:
        base = self.head(base_branch)
        return base is not None and self._tree(base, head) is not None

    def merge(self, base_branch: str, head: str, message: str, method: str = "merge") -> str | None:
        """Merge `head` into `base_branch`; the new base head, or None on a conflict."""
        base = self.head(base_branch)
        assert base is not None, base_branch
        tree = self._tree(base, head)
        if tree is None:
            return None
        parents = ["-p", base] if method == "squash" else ["-p", base, "-p", head]
        commit = self.git("commit-tree", tree, *parents, "-m", message).stdout.strip()
        self.git("update-ref", f"refs/heads/{base_branch}", commit, base)
        return commit
