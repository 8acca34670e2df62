"""The shop's configuration repository: a bare remote (what is deployed), a developer's clone
(where the demo's faults are committed, as a person would), and selfheal's own clone.

The seed history is dated a day back, like any real repository's, so the only recent commits
are the ones the scenarios make.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from demo.shop import CONFIG_FILE, FLAGS_FILE

CHECK_CONFIG = '''\
#!/usr/bin/env python3
"""check-config SERVICE: the service's config and flags parse and stay within sane bounds."""
import re
import sys
from pathlib import Path

BOUNDS = {"size": (1, 200), "timeout_ms": (1, 60000), "page_size": (1, 100000)}
service = sys.argv[1]
errors = []
for path in (Path(f"services/{service}/config/app.yaml"), Path(f"flags/{service}.yaml")):
    if not path.is_file():
        errors.append(f"{path}: missing")
        continue
    for n, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].rstrip()
        if not text:
            continue
        m = re.fullmatch(r"( *)([a-z_][a-z0-9_]*): ?(.*)", text)
        if m is None or len(m.group(1)) % 2:
            errors.append(f"{path}:{n}: not a 'key: value' line")
            continue
        key, value = m.group(2), m.group(3).strip()
        if key in BOUNDS and value:
            lo, hi = BOUNDS[key]
            if not value.isdigit() or not lo <= int(value) <= hi:
                errors.append(f"{path}:{n}: {key} must be an integer in [{lo}, {hi}], got {value!r}")
        if key == "enabled" and value not in ("true", "false"):
            errors.append(f"{path}:{n}: enabled must be true or false")
print("\\n".join(errors) or f"{service}: config OK")
sys.exit(1 if errors else 0)
'''

BASE_CONFIG: dict[str, object] = {
    "payments": {"provider": "acme-pay", "timeout_ms": 800},
    "db": {"pool": {"size": 10, "timeout_ms": 50}},
    "products": {"page_size": 20},
}
BASE_FLAGS: dict[str, object] = {
    "flags": {"new_recommendations": {"enabled": False}, "one_click_checkout": {"enabled": True}}
}

_DEV = ("Dana Developer", "dana@shop.example")


def _git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False, env=env
    )
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {res.stderr.strip()[:500]}")
    return res.stdout.strip()


def _env(when: datetime | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME=_DEV[0],
        GIT_AUTHOR_EMAIL=_DEV[1],
        GIT_COMMITTER_NAME=_DEV[0],
        GIT_COMMITTER_EMAIL=_DEV[1],
    )
    if when is not None:
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S+0000")
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    return env


class ConfigRepo:
    def __init__(self, root: Path, service: str = "shop") -> None:
        self.root = root
        self.service = service
        self.remote = root / "config.git"
        self.dev = root / "dev-clone"
        self.selfheal_clone = root / "selfheal-clone"

    @property
    def config_path(self) -> str:
        return CONFIG_FILE.format(service=self.service)

    @property
    def flags_path(self) -> str:
        return FLAGS_FILE.format(service=self.service)

    def create(self) -> ConfigRepo:
        self.root.mkdir(parents=True, exist_ok=True)
        _git(self.root, "init", "--quiet", "--bare", "--initial-branch=main", str(self.remote))
        _git(self.root, "init", "--quiet", "--initial-branch=main", str(self.dev))
        yesterday = datetime.now(UTC) - timedelta(days=1)
        check = self.dev / "bin" / "check-config"
        check.parent.mkdir(parents=True)
        check.write_text(CHECK_CONFIG)
        check.chmod(0o755)
        (self.dev / "README.md").write_text(
            f"# {self.service} configuration\n\nEvery push to main is deployed. "
            f"`bin/check-config {self.service}` validates.\n"
        )
        self._write(self.config_path, BASE_CONFIG)
        self._write(self.flags_path, BASE_FLAGS)
        _git(self.dev, "add", "-A")
        _git(
            self.dev, "commit", "--quiet", "-m", f"{self.service}: initial configuration", env=_env(yesterday)
        )
        _git(self.dev, "remote", "add", "origin", str(self.remote))
        _git(self.dev, "push", "--quiet", "origin", "main")
        _git(self.root, "clone", "--quiet", "--branch", "main", str(self.remote), str(self.selfheal_clone))
        return self

    def _write(self, rel: str, data: dict[str, object]) -> None:
        path = self.dev / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    def _load(self, rel: str) -> dict[str, object]:
        loaded = yaml.safe_load((self.dev / rel).read_text())
        return loaded if isinstance(loaded, dict) else {}

    def sync(self) -> None:
        """Bring the developer's clone up to what is deployed (selfheal may have pushed)."""
        _git(self.dev, "fetch", "--quiet", "origin")
        _git(self.dev, "reset", "--quiet", "--hard", "origin/main")

    def commit_change(self, rel: str, key: str, value: object, message: str) -> str:
        """Set dotted `key` in `rel`, commit it as the developer and push it; returns the SHA."""
        self.sync()
        data = self._load(rel)
        node: dict[str, object] = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            assert isinstance(child, dict)
            node = child
        node[parts[-1]] = value
        self._write(rel, data)
        _git(self.dev, "commit", "--quiet", "-am", message, env=_env())
        _git(self.dev, "push", "--quiet", "origin", "main")
        return _git(self.dev, "rev-parse", "HEAD")

    def revert(self, sha: str, message: str) -> str:
        """Revert `sha` by hand, as the on-call would; returns the revert's SHA."""
        self.sync()
        _git(self.dev, "revert", "--no-edit", sha, env=_env())
        _git(self.dev, "commit", "--quiet", "--amend", "-m", message, env=_env())
        _git(self.dev, "push", "--quiet", "origin", "main")
        return _git(self.dev, "rev-parse", "HEAD")

    def log(self) -> list[tuple[str, str]]:
        """(sha, full message) of every commit on the remote's main, newest first."""
        out = _git(self.remote, "log", "--format=%H%x00%B%x01", "main")
        commits = []
        for chunk in out.split("\x01"):
            chunk = chunk.strip("\n")
            if chunk:
                sha, _, body = chunk.partition("\x00")
                commits.append((sha, body))
        return commits

    def head(self) -> str:
        return _git(self.remote, "rev-parse", "main")


def shop_argv(repo: ConfigRepo, port_file: Path, log_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "demo.shop",
        "--remote",
        str(repo.remote),
        "--service",
        repo.service,
        "--port-file",
        str(port_file),
        "--log-file",
        str(log_file),
    ]
