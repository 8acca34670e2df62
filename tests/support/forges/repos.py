"""A config repository as the GitOps tests use it: a bare remote (the forge's storage), selfheal's
clone, and a teammate's clone to push with; plus GitHub's webhook signature (the deliveries
themselves are in `events`)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import yaml

from devstack.pool import CONFIG, git, seed_config_repo


@dataclass
class ConfigRepo:
    root: Path
    remote: Path
    work: Path
    service: str

    def pool_size(self, rev: str = "main") -> int:
        text = git(self.remote, "show", f"{rev}:{CONFIG.format(service=self.service)}")
        return int(yaml.safe_load(text)["pool"]["size"])

    def deploys(self) -> int:
        """Pushes to the remote since it was made, with `make_config_repo(deploy_log=True)`."""
        log = self.root / "deploys.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

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


def make_config_repo(root: Path, service: str, size: int = 5, *, deploy_log: bool = False) -> ConfigRepo:
    """With `deploy_log`, every later push is a deploy, logged in `root/deploys.log`."""
    log = root / "deploys.log" if deploy_log else None
    remote, work = seed_config_repo(root, [service], size=size, deploy_log=log)
    return ConfigRepo(root=root, remote=remote, work=work, service=service)


def github_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
