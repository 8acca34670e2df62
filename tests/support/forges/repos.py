"""A config repository as the GitOps tests use it: a bare remote (the forge's storage), selfheal's
clone, and a teammate's clone to push with; plus GitHub's webhook signature (the deliveries
themselves are in `events`)."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

CONFIG = "services/{service}/config.yaml"


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=Dana", "-c", "user.email=dana@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


@dataclass
class ConfigRepo:
    root: Path
    remote: Path
    work: Path
    service: str

    def pool_size(self, rev: str = "main") -> int:
        text = git(self.remote, "show", f"{rev}:{CONFIG.format(service=self.service)}")
        return int(yaml.safe_load(text)["pool"]["size"])

    def head(self, branch: str = "main") -> str:
        return git(self.remote, "rev-parse", f"refs/heads/{branch}")

    def push_to(self, branch: str, text: str) -> str:
        """A teammate pushes a commit to `branch` (as to someone else's fix branch)."""
        other = self.root / "teammate"
        if not other.exists():
            git(self.root, "clone", "-q", str(self.remote), str(other))
        git(other, "fetch", "-q", "origin")
        git(other, "checkout", "-q", "-B", branch, f"origin/{branch}")
        (other / "NOTES.md").write_text(text)
        git(other, "add", "NOTES.md")
        git(other, "commit", "-q", "-m", "teammate: notes")
        git(other, "push", "-q", "origin", f"{branch}:{branch}")
        return git(other, "rev-parse", "HEAD")


def make_config_repo(root: Path, service: str, size: int = 5) -> ConfigRepo:
    remote, seed, work = root / "remote.git", root / "seed", root / "work"
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    cfg = seed / CONFIG.format(service=service)
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f"# pool settings\npool:\n  size: {size}\n  timeout: 30s\n")
    git(root, "init", "-q", "-b", "main", str(seed))
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "initial config")
    git(seed, "push", "-q", str(remote), "main:main")
    git(root, "clone", "-q", "-b", "main", str(remote), str(work))
    return ConfigRepo(root=root, remote=remote, work=work, service=service)


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
