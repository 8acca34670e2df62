"""GitRepo on real repositories: a bare "remote", selfheal's clone, and a colleague's clone that
pushes behind our back. Every step is run twice or after a simulated crash to prove idempotence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors import config_files
from connectors.git.process import GitError
from connectors.git.repo import FIX_TRAILER, ROLLBACK_TRAILER, GitRepo, Worktree

INCIDENT = "0123456789ab-abc123"
ALERT_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

DEPLOYMENT = """\
# web deployment (owned by team-web)
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web  # keep in sync with the service
spec:
  replicas: 3
  template:
    spec:
      containers:
        - name: web
          image: "nginx:1.25"
          resources:
            limits:
              memory: 512Mi  # raised by hand in March
              cpu: 500m
            requests:
              memory: 2Gi
          env:
            - name: RATIO
              value: "0.5"
"""


def git(cwd: Path, *args: str, when: datetime | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    if when is not None:
        stamp = f"@{int(when.timestamp())} +0000"
        env |= {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str, when: datetime) -> str:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", message, when=when)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Repos:
    remote: Path  # bare
    clone: Path  # selfheal's working clone
    colleague: Path  # someone else pushing to the remote
    worktrees: Path
    history: dict[str, str]  # name → sha of the seeded commits

    def repo(self) -> GitRepo:
        return GitRepo(self.clone)

    def colleague_push(self, files: dict[str, str], message: str, branch: str = "main") -> str:
        git(self.colleague, "fetch", "-q", "origin")
        git(self.colleague, "checkout", "-q", "-B", branch, f"origin/{branch}")
        sha = commit(self.colleague, files, message, datetime.now(UTC))
        git(self.colleague, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return sha

    def remote_file(self, path: str, branch: str = "main") -> str:
        return git(self.remote, "show", f"{branch}:{path}")


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-q", "-b", "main", str(seed))
    history = {
        "base": commit(
            seed,
            {
                "deploy/web.yaml": DEPLOYMENT,
                "config/app.yaml": "timeout: 5\n",
                "config/flags.yaml": "new_checkout: false\n",
                "src/app.py": "print('v1')\n",
            },
            "initial",
            ALERT_AT - timedelta(days=30),
        ),
        "before_window": commit(
            seed, {"config/app.yaml": "timeout: 10\n"}, "longer timeout", ALERT_AT - timedelta(hours=3)
        ),
        "in_window_config": commit(
            seed, {"config/app.yaml": "timeout: 1\n"}, "aggressive timeout", ALERT_AT - timedelta(minutes=20)
        ),
        "in_window_code": commit(
            seed, {"src/app.py": "print('v2')\n"}, "v2", ALERT_AT - timedelta(minutes=15)
        ),
        "in_window_flags": commit(
            seed,
            {"config/flags.yaml": "new_checkout: true\n"},
            "enable checkout",
            ALERT_AT - timedelta(minutes=5),
        ),
        "after_window": commit(seed, {"README.md": "docs\n"}, "docs", ALERT_AT + timedelta(minutes=10)),
    }
    git(seed, "remote", "add", "origin", str(remote))
    git(seed, "push", "-q", "origin", "main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    colleague = tmp_path / "colleague"
    git(tmp_path, "clone", "-q", str(remote), str(colleague))
    return Repos(remote, clone, colleague, tmp_path / "worktrees", history)


def fix_memory(repo: GitRepo, wt: Worktree) -> str:
    repo.edit_value(
        wt, "deploy/web.yaml", "spec.template.spec.containers.0.resources.limits.memory", scale=1.5
    )
    return repo.commit_fix(wt, INCIDENT, "Raise web memory limit to 768Mi")


# --------------------------------------------------------------------------------- worktrees


def test_prepare_worktree_branches_from_the_remote_base_and_is_reused(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    assert wt.path == (repos.worktrees / INCIDENT).resolve()
    assert wt.branch == f"selfheal/{INCIDENT}" and wt.base_ref == "origin/main"
    assert git(wt.path, "rev-parse", "--abbrev-ref", "HEAD") == wt.branch
    assert git(wt.path, "rev-parse", "HEAD") == repos.history["after_window"]

    (wt.path / "config/app.yaml").write_text("fix in progress: true\n")
    again = repo.prepare_worktree(INCIDENT, repos.worktrees)
    assert again == wt
    assert (wt.path / "config/app.yaml").read_text() == "fix in progress: true\n"  # earlier steps' work kept

    (wt.path / "junk.txt").write_text("x")
    fresh = repo.prepare_worktree(INCIDENT, repos.worktrees, clean=True)  # a new fix attempt
    assert fresh == wt
    assert (wt.path / "config/app.yaml").read_text() == "timeout: 1\n"
    assert not (wt.path / "junk.txt").exists()


def test_prepare_worktree_picks_up_new_remote_commits_for_a_new_incident(repos: Repos) -> None:
    newer = repos.colleague_push({"NOTES": "n\n"}, "notes")
    wt = repos.repo().prepare_worktree(INCIDENT, repos.worktrees)
    assert git(wt.path, "rev-parse", "HEAD") == newer


def test_a_worktree_prepared_right_after_our_push_starts_from_it(repos: Repos) -> None:
    """Worktrees prepared in a burst share one fetch, but never across our own push: the next
    incident on the same file must see the fix that just landed, not edit the old content."""
    repo = repos.repo()
    first = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix_memory(repo, first)
    assert repo.push(first, "main") is True
    second = repo.prepare_worktree(INCIDENT + "-next", repos.worktrees)
    assert git(second.path, "rev-parse", "HEAD") == git(repos.remote, "rev-parse", "main")
    assert "768Mi" in (second.path / "deploy/web.yaml").read_text()


def test_prepare_worktree_recovers_from_crash_leftovers(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix = fix_memory(repo, wt)

    shutil.rmtree(wt.path)  # directory gone, registration left behind
    again = repo.prepare_worktree(INCIDENT, repos.worktrees)
    assert repo.find_fix_commit(again, INCIDENT) == fix  # the branch (and the fix) survived

    git(repos.clone, "worktree", "remove", "--force", str(wt.path))
    wt.path.mkdir(parents=True)
    (wt.path / "stray").write_text("a crash between mkdir and registration")
    again = repo.prepare_worktree(INCIDENT, repos.worktrees)
    assert not (again.path / "stray").exists()
    assert repo.find_fix_commit(again, INCIDENT) == fix

    git(again.path, "checkout", "-q", "--detach")  # e.g. a crash in the middle of a rebase
    again = GitRepo(repos.clone).prepare_worktree(INCIDENT, repos.worktrees)
    assert git(again.path, "rev-parse", "--abbrev-ref", "HEAD") == again.branch
    assert repo.find_fix_commit(again, INCIDENT) == fix


def test_fix_steps_as_separate_activities_each_preparing_the_worktree(repos: Repos) -> None:
    """How the activities use it: every step opens the worktree again; the commit has all steps."""
    resources = "spec.template.spec.containers.0.resources.limits"
    since = ALERT_AT - timedelta(minutes=30)
    assert GitRepo(repos.clone).prepare_worktree(INCIDENT, repos.worktrees, clean=True)
    steps: list[Callable[[GitRepo, Worktree], object]] = [
        lambda r, wt: r.edit_value(wt, "deploy/web.yaml", f"{resources}.memory", scale=1.5),
        lambda r, wt: r.revert_window(wt, since, ALERT_AT, ["config/flags.yaml"], max_commits=5),
        lambda r, wt: r.edit_value(wt, "deploy/web.yaml", f"{resources}.cpu", scale=2),
    ]
    for step in steps:
        repo = GitRepo(repos.clone)  # a fresh activity, maybe on a restarted worker
        step(repo, repo.prepare_worktree(INCIDENT, repos.worktrees))
    repo = GitRepo(repos.clone)
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix = repo.commit_fix(wt, INCIDENT, "memory, cpu and the flag")
    changed = git(wt.path, "show", "--name-only", "--format=", fix).split()
    assert sorted(changed) == ["config/flags.yaml", "deploy/web.yaml"]
    text = git(wt.path, "show", f"{fix}:deploy/web.yaml")
    assert "memory: 768Mi" in text and "cpu: 1000m" in text


def test_retried_fix_steps_do_not_apply_twice(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    memory = "spec.template.spec.containers.0.resources.limits.memory"
    assert repo.edit_value(wt, "deploy/web.yaml", memory, scale=1.5) == ("512Mi", "768Mi")
    wt = GitRepo(repos.clone).prepare_worktree(INCIDENT, repos.worktrees)  # the activity is retried
    assert repo.edit_value(wt, "deploy/web.yaml", memory, scale=1.5) == ("512Mi", "768Mi")
    assert "memory: 768Mi" in (wt.path / "deploy/web.yaml").read_text()  # not 1152Mi
    assert repo.edit_value(wt, "deploy/web.yaml", memory, scale=2) == ("768Mi", "1536Mi")  # a different edit

    since = ALERT_AT - timedelta(minutes=30)
    first = repo.revert_window(wt, since, ALERT_AT, ["config/*.yaml"], max_commits=5)
    assert repo.revert_window(wt, since, ALERT_AT, ["config/*.yaml"], max_commits=5) == first
    assert (wt.path / "config/app.yaml").read_text() == "timeout: 10\n"
    assert "memory: 1536Mi" in (wt.path / "deploy/web.yaml").read_text()


def test_prepare_aborts_an_interrupted_revert_but_keeps_earlier_edits(repos: Repos) -> None:
    repos.colleague_push({"config/flags.yaml": "new_checkout: partial\n"}, "tweak flag")
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    repo.edit_value(wt, "deploy/web.yaml", "spec.replicas", value=4)
    # A worker dies in the middle of a conflicting revert, leaving git's state behind.
    done = subprocess.run(
        ["git", "revert", "--no-commit", repos.history["in_window_flags"]], cwd=wt.path, capture_output=True
    )
    assert done.returncode != 0 and (wt.path / "config/flags.yaml").read_text().startswith("<<<<<<<")
    wt = GitRepo(repos.clone).prepare_worktree(INCIDENT, repos.worktrees)
    assert (wt.path / "config/flags.yaml").read_text() == "new_checkout: partial\n"
    assert "replicas: 4" in (wt.path / "deploy/web.yaml").read_text()
    assert git(wt.path, "status", "--porcelain") == "M deploy/web.yaml"


def test_prepare_worktree_without_a_remote_uses_the_local_base(tmp_path: Path) -> None:
    local = tmp_path / "local"
    git(tmp_path, "init", "-q", "-b", "main", str(local))
    sha = commit(local, {"a.yaml": "x: 1\n"}, "init", ALERT_AT)
    wt = GitRepo(local).prepare_worktree(INCIDENT, tmp_path / "wts")
    assert wt.base_ref == "main"
    assert git(wt.path, "rev-parse", "HEAD") == sha


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", ".hidden", "x..y", "name.lock", "a b", "-rf"])
def test_unsafe_incident_ids_are_refused(repos: Repos, bad: str) -> None:
    with pytest.raises(GitError) as err:
        repos.repo().prepare_worktree(bad, repos.worktrees)
    assert not err.value.retryable


def test_missing_base_branch_is_a_clear_error(repos: Repos) -> None:
    with pytest.raises(GitError, match=r"does not exist|couldn't find remote ref") as err:
        GitRepo(repos.clone, base_branch="release").prepare_worktree(INCIDENT, repos.worktrees)
    assert not err.value.retryable


# ----------------------------------------------------------------------------- fix commits


def test_commit_fix_is_made_once_and_found_again(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    assert repo.find_fix_commit(wt, INCIDENT) is None
    fix = fix_memory(repo, wt)
    assert repo.commit_fix(wt, INCIDENT, "again") == fix  # a retried activity
    message = git(wt.path, "log", "-1", "--format=%B", fix)
    assert message.startswith("Raise web memory limit")
    assert f"{FIX_TRAILER}: {INCIDENT}" in message.splitlines()
    assert git(wt.path, "log", "-1", "--format=%an <%ae>", fix) == "selfheal <selfheal@localhost>"

    # A worker that crashed after the commit prepares the worktree again and finds the fix.
    again = GitRepo(repos.clone).prepare_worktree(INCIDENT, repos.worktrees)
    assert repo.find_fix_commit(again, INCIDENT) == fix
    assert repo.find_fix_commit(again, INCIDENT + "0") is None  # ids are matched exactly
    assert git(again.path, "rev-list", "--count", f"{again.base_ref}..HEAD") == "1"


def test_commit_fix_with_nothing_changed_is_an_error(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match="nothing to commit") as err:
        repo.commit_fix(wt, INCIDENT, "no-op")
    assert not err.value.retryable


# ---------------------------------------------------------------------------- revert window


def test_revert_window_reverts_matching_commits_newest_first(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    since = ALERT_AT - timedelta(minutes=30)
    reverted = repo.revert_window(wt, since, ALERT_AT, ["config/*.yaml"], max_commits=5)
    assert reverted == [repos.history["in_window_flags"], repos.history["in_window_config"]]
    assert (wt.path / "config/flags.yaml").read_text() == "new_checkout: false\n"
    assert (wt.path / "config/app.yaml").read_text() == "timeout: 10\n"  # back to before the window
    assert (wt.path / "src/app.py").read_text() == "print('v2')\n"  # other paths untouched
    fix = repo.commit_fix(wt, INCIDENT, "Revert config changes made before the alert")
    assert repo.find_fix_commit(wt, INCIDENT) == fix


def test_revert_window_matches_globs_across_directories(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    since = ALERT_AT - timedelta(minutes=30)
    assert repo.revert_window(wt, since, ALERT_AT, ["**/*.py"], max_commits=5) == [
        repos.history["in_window_code"]
    ]


def test_revert_window_without_matches_is_a_non_retryable_error(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match="nothing to revert") as err:
        repo.revert_window(wt, ALERT_AT - timedelta(minutes=30), ALERT_AT, ["docs/**"], max_commits=5)
    assert not err.value.retryable


def test_revert_window_refuses_more_commits_than_allowed(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match="max_commits=1") as err:
        repo.revert_window(wt, ALERT_AT - timedelta(minutes=30), ALERT_AT, ["config"], max_commits=1)
    assert not err.value.retryable
    assert git(wt.path, "status", "--porcelain") == ""  # nothing half-reverted


def test_revert_window_conflict_leaves_a_clean_worktree(repos: Repos) -> None:
    repos.colleague_push({"config/flags.yaml": "new_checkout: partial\n"}, "tweak flag")
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match="conflicts") as err:
        repo.revert_window(
            wt, ALERT_AT - timedelta(minutes=30), ALERT_AT, ["config/flags.yaml"], max_commits=5
        )
    assert not err.value.retryable
    assert git(wt.path, "status", "--porcelain") == ""


@pytest.mark.parametrize("bad", ["../outside", "/etc", ":(top)x", ""])
def test_revert_window_refuses_paths_outside_the_repo(repos: Repos, bad: str) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError):
        repo.revert_window(wt, ALERT_AT - timedelta(minutes=30), ALERT_AT, [bad], max_commits=5)


# -------------------------------------------------------------------------------------- edit


def test_edit_yaml_scales_with_units_and_keeps_comments(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    limits = "spec.template.spec.containers.0.resources"
    assert repo.edit_value(wt, "deploy/web.yaml", f"{limits}.limits.memory", scale=1.5) == ("512Mi", "768Mi")
    assert repo.edit_value(wt, "deploy/web.yaml", f"{limits}.limits.cpu", scale=1.5) == ("500m", "750m")
    assert repo.edit_value(wt, "deploy/web.yaml", f"{limits}.requests.memory", scale=1.5) == ("2Gi", "3Gi")
    assert repo.edit_value(wt, "deploy/web.yaml", "spec.replicas", scale=1.5) == (3, 5)  # ints round up
    assert repo.edit_value(
        wt, "deploy/web.yaml", "spec.template.spec.containers.0.env.0.value", scale=1.5
    ) == ("0.5", "0.75")
    text = (wt.path / "deploy/web.yaml").read_text()
    expected = (
        DEPLOYMENT.replace("512Mi", "768Mi")
        .replace("500m", "750m")
        .replace("2Gi", "3Gi")
        .replace("replicas: 3", "replicas: 5")
        .replace('"0.5"', '"0.75"')
    )
    assert text == expected  # comments, quotes and the `- ` indentation are all intact


def test_edit_yaml_set_value_and_cap(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    memory = "spec.template.spec.containers.0.resources.limits.memory"
    assert repo.edit_value(wt, "deploy/web.yaml", memory, scale=4, max_value=1024) == ("512Mi", "1024Mi")
    with pytest.raises(GitError, match="max_value") as err:
        repo.edit_value(wt, "deploy/web.yaml", memory, scale=1.5, max_value=1024)
    assert not err.value.retryable
    assert repo.edit_value(
        wt, "deploy/web.yaml", "spec.template.spec.containers.0.image", value="nginx:1.26"
    ) == (
        "nginx:1.25",
        "nginx:1.26",
    )
    assert 'image: "nginx:1.26"' in (wt.path / "deploy/web.yaml").read_text()  # quoting kept
    with pytest.raises(GitError, match="exceeds max_value"):
        repo.edit_value(wt, "deploy/web.yaml", "spec.replicas", value=50, max_value=10)


def test_edit_json_toml_and_env(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    (wt.path / "svc.json").write_text(
        json.dumps({"pool": {"size": 10, "ratio": 0.2}, "tags": ["a"]}, indent=4) + "\n"
    )
    (wt.path / "app.toml").write_text(
        '# app settings\n[pool]\nsize = 10  # connections\nname = "main"\n\n[[workers]]\nthreads = 2\n'
    )
    (wt.path / ".env").write_text('# env\nexport POOL_SIZE=10\nNAME="a b"  \nMEMORY=256Mi # container\n')

    assert repo.edit_value(wt, "svc.json", "pool.size", scale=1.5) == (10, 15)
    assert repo.edit_value(wt, "svc.json", "pool.ratio", scale=1.5) == (0.2, 0.3)
    assert repo.edit_value(wt, "svc.json", "tags.0", value="b") == ("a", "b")
    assert (wt.path / "svc.json").read_text() == json.dumps(
        {"pool": {"size": 15, "ratio": 0.3}, "tags": ["b"]}, indent=4
    ) + "\n"

    assert repo.edit_value(wt, "app.toml", "pool.size", scale=2) == (10, 20)
    assert repo.edit_value(wt, "app.toml", "workers.0.threads", value=4) == (2, 4)
    assert (wt.path / "app.toml").read_text() == (
        '# app settings\n[pool]\nsize = 20  # connections\nname = "main"\n\n[[workers]]\nthreads = 4\n'
    )

    assert repo.edit_value(wt, ".env", "POOL_SIZE", scale=1.5) == ("10", "15")
    assert repo.edit_value(wt, ".env", "NAME", value="c d") == ("a b", "c d")
    assert repo.edit_value(wt, ".env", "MEMORY", scale=2) == ("256Mi", "512Mi")
    assert (
        wt.path / ".env"
    ).read_text() == '# env\nexport POOL_SIZE=15\nNAME="c d"  \nMEMORY=512Mi # container\n'


@pytest.mark.parametrize(
    ("file", "key", "match"),
    [
        ("deploy/web.yaml", "spec.nope", "not found"),
        ("deploy/web.yaml", "spec.template.spec.containers.7.name", "out of range"),
        ("deploy/web.yaml", "spec.template.spec.containers.web", "indexes a list"),
        ("deploy/web.yaml", "metadata.name", "cannot scale"),
        ("config/missing.yaml", "a", "does not exist"),
        ("src/app.py", "a", "cannot tell the format"),
    ],
)
def test_edit_errors_are_clear(repos: Repos, file: str, key: str, match: str) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match=match) as err:
        repo.edit_value(wt, file, key, scale=1.5)
    assert not err.value.retryable


@pytest.mark.parametrize(
    "file", ["../outside.yaml", "/etc/hosts", ".git/config", "link/outside.yaml", "escape.yaml"]
)
def test_edit_refuses_paths_leaving_the_worktree(repos: Repos, tmp_path: Path, file: str) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "outside.yaml").write_text("a: 1\n")
    (wt.path / "link").symlink_to(outside)
    (wt.path / "escape.yaml").symlink_to(outside / "outside.yaml")
    with pytest.raises(GitError):
        repo.edit_value(wt, file, "a", value=2)
    assert (outside / "outside.yaml").read_text() == "a: 1\n"


def test_the_file_editor_needs_no_git(tmp_path: Path) -> None:
    """connectors.config_files edits a plain directory; the journal is wherever the caller keeps it."""
    root = tmp_path / "files"
    root.mkdir()
    (root / "app.yaml").write_text("pool: 10  # connections\n")
    journal = tmp_path / "last-edit.json"
    for _ in range(2):  # the second call is a retry: recognised, not applied again
        assert config_files.edit_value(root, "app.yaml", "pool", journal=journal, scale=1.5) == (10, 15)
    assert (root / "app.yaml").read_text() == "pool: 15  # connections\n"
    with pytest.raises(config_files.EditError, match="not found") as err:
        config_files.edit_value(root, "app.yaml", "nope", journal=journal, value=1)
    assert err.value.retryable is False


# -------------------------------------------------------------------------------------- push


def test_push_fast_forwards_once_then_reports_already_deployed(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix = fix_memory(repo, wt)
    assert repo.push(wt, "main") is True
    assert git(repos.remote, "rev-parse", "main") == fix
    assert repo.push(wt, "main") is False  # a retried deploy step
    repos.colleague_push({"NOTES": "later\n"}, "unrelated later work")
    assert repo.push(wt, "main") is False  # still deployed, even though main moved on


def test_a_worktree_add_killed_midway_does_not_stop_pushes(repos: Repos) -> None:
    """A worker killed during another incident's `git worktree add` leaves that worktree's admin
    HEAD all zeros; every fetch in the repository then failed ("bad object worktrees/.../HEAD"),
    so every later push failed too (found by `make chaos`)."""
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix = fix_memory(repo, wt)
    admin = repos.clone / ".git" / "worktrees" / "inc-killed"
    admin.mkdir(parents=True)
    (admin / "HEAD").write_text("0" * 40 + "\n")
    (admin / "gitdir").write_text(str(repos.worktrees / "inc-killed" / ".git") + "\n")
    (admin / "commondir").write_text("../..\n")
    code = subprocess.run(["git", "fetch", "-q", "origin"], cwd=repos.clone, capture_output=True).returncode
    assert code != 0, "the leftover really breaks fetch"
    repos.colleague_push({"NOTES": "later\n"}, "unrelated later work")  # the push must fetch and rebase
    assert repo.push(wt, "main") is True
    assert repos.remote_file("deploy/web.yaml") == git(repos.clone, "show", f"{fix}:deploy/web.yaml")
    assert not admin.exists()


def test_push_rebases_only_the_fix_when_the_remote_moved(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix = fix_memory(repo, wt)
    theirs = repos.colleague_push({"NOTES": "meanwhile\n"}, "meanwhile")
    assert repo.push(wt, "main") is True
    remote_head = git(repos.remote, "rev-parse", "main")
    assert remote_head != fix  # rebased
    assert git(repos.remote, "rev-parse", "main^") == theirs
    assert f"{FIX_TRAILER}: {INCIDENT}" in git(repos.remote, "log", "-1", "--format=%B", "main")
    assert "768Mi" in repos.remote_file("deploy/web.yaml")
    assert repo.find_fix_commit(wt, INCIDENT) == remote_head  # found by trailer after the rebase
    assert repo.remote_contains("origin", "main", fix)  # the pre-rebase SHA counts too
    assert not repo.remote_contains("origin", "nonexistent", fix)

    # A crash lost the rebased branch: the old commit is pushed again? No: the remote has its twin.
    git(wt.path, "reset", "-q", "--hard", fix)
    assert repo.push(wt, "main") is False


def test_push_conflicting_remote_change_is_an_error_for_a_human(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix_memory(repo, wt)
    repos.colleague_push({"deploy/web.yaml": DEPLOYMENT.replace("512Mi", "640Mi")}, "manual bump")
    with pytest.raises(GitError, match="rebase conflict") as err:
        repo.push(wt, "main")
    assert not err.value.retryable
    assert "640Mi" in repos.remote_file("deploy/web.yaml")
    assert git(wt.path, "status", "--porcelain") == ""


def test_push_to_a_lagging_deploy_branch_carries_only_the_fix(repos: Repos) -> None:
    git(repos.colleague, "push", "-q", "origin", f"{repos.history['in_window_code']}:refs/heads/production")
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix_memory(repo, wt)
    assert repo.push(wt, "production") is True
    assert git(repos.remote, "rev-parse", "production^") == repos.history["in_window_code"]
    assert "768Mi" in repos.remote_file("deploy/web.yaml", "production")
    assert "new_checkout: false" in repos.remote_file(
        "config/flags.yaml", "production"
    )  # main's later work stays out
    assert repo.push(wt, "production") is False


def test_push_without_a_fix_commit_is_refused(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match="nothing to push"):
        repo.push(wt, "main")


def test_push_to_an_unreachable_remote_is_retryable(repos: Repos, tmp_path: Path) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix_memory(repo, wt)
    git(repos.clone, "remote", "add", "down", "http://127.0.0.1:9/repo.git")
    with pytest.raises(GitError) as err:
        repo.push(wt, "main", remote="down")
    assert err.value.retryable


# ---------------------------------------------------------------------------------- rollback


def test_revert_fix_and_push_restores_the_original(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix = fix_memory(repo, wt)
    assert repo.push(wt, "main")
    rollback = repo.revert_fix(wt, INCIDENT)
    assert repo.revert_fix(wt, INCIDENT) == rollback  # idempotent
    message = git(wt.path, "log", "-1", "--format=%B", rollback)
    assert f"{ROLLBACK_TRAILER}: {INCIDENT}" in message and fix in message
    assert repo.find_fix_commit(wt, INCIDENT) == fix  # the rollback is not mistaken for the fix
    assert not repo.remote_contains("origin", "main", rollback)
    assert repo.push(wt, "main") is True
    assert repo.remote_contains("origin", "main", rollback)
    assert repos.remote_file("deploy/web.yaml") == DEPLOYMENT.rstrip("\n")  # git() strips the output
    assert repo.push(wt, "main") is False


def test_revert_fix_without_a_fix_is_an_error(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match="nothing to roll back"):
        repo.revert_fix(wt, INCIDENT)


# ----------------------------------------------------------------------------------- cleanup


def test_cleanup_removes_the_worktree_and_a_merged_branch(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix_memory(repo, wt)
    repo.push(wt, "main")
    repo.cleanup(wt)
    assert not wt.path.exists()
    assert git(repos.clone, "branch", "--list", wt.branch) == ""
    repo.cleanup(wt)  # idempotent


def test_cleanup_keeps_an_unpushed_branch(repos: Repos) -> None:
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    fix = fix_memory(repo, wt)
    repo.cleanup(wt)
    assert not wt.path.exists()
    assert git(repos.clone, "rev-parse", wt.branch) == fix


# ------------------------------------------------------------- proposals: one commit, a patch


def test_revert_commit_undoes_exactly_that_commit_once_even_when_retried(repos: Repos) -> None:
    repo = repos.repo()
    sha = repos.history["in_window_config"]
    full, subject = repo.base_commit(sha[:10])
    assert (full, subject) == (sha, "aggressive timeout")
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    assert repo.revert_commit(wt, full) == "aggressive timeout"
    assert repo.revert_commit(wt, full) == "aggressive timeout"  # a retried step: no-op
    assert (wt.path / "config/app.yaml").read_text() == "timeout: 10\n"
    assert (wt.path / "config/flags.yaml").read_text() == "new_checkout: true\n"  # later change kept
    repo.commit_fix(wt, INCIDENT, "Revert aggressive timeout")
    assert git(wt.path, "show", "--name-only", "--format=", "HEAD") == "config/app.yaml"


def test_revert_commit_refuses_merges_the_first_commit_and_commits_off_the_base(repos: Repos) -> None:
    git(repos.colleague, "checkout", "-q", "-b", "side", "origin/main")
    side = commit(repos.colleague, {"side.txt": "x\n"}, "side work", datetime.now(UTC))
    git(repos.colleague, "push", "-q", "origin", "side")
    git(repos.clone, "fetch", "-q", "origin", "side")
    repo = repos.repo()
    with pytest.raises(GitError, match="is not on origin/main") as off:
        repo.base_commit(side)  # in the clone, but never merged into the base
    assert not off.value.retryable
    git(repos.colleague, "checkout", "-q", "main")
    git(repos.colleague, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    git(repos.colleague, "push", "-q", "origin", "main")
    merge = git(repos.colleague, "rev-parse", "HEAD")
    with pytest.raises(GitError, match="merge commit"):
        repo.base_commit(merge)
    with pytest.raises(GitError, match="first commit"):
        repo.base_commit(repos.history["base"])
    with pytest.raises(GitError, match="does not exist"):
        repo.base_commit("0" * 40)
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match="merge commit"):
        repo.revert_commit(wt, merge)
    assert git(wt.path, "status", "--porcelain") == ""


def test_revert_commit_conflicting_with_later_changes_is_a_clear_error(repos: Repos) -> None:
    repos.colleague_push({"config/app.yaml": "timeout: 3\n"}, "tune timeout again")
    repo = repos.repo()
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    with pytest.raises(GitError, match=r"conflicts with later changes in config/app\.yaml") as err:
        repo.revert_commit(wt, repos.history["in_window_config"])
    assert not err.value.retryable
    assert git(wt.path, "status", "--porcelain") == ""


PATCH = """\
diff --git a/config/app.yaml b/config/app.yaml
--- a/config/app.yaml
+++ b/config/app.yaml
@@ -1 +1 @@
-timeout: 1
+timeout: 10
"""


def test_a_patch_is_checked_against_the_base_then_applied_once(repos: Repos) -> None:
    repo = repos.repo()
    repo.check_patch(PATCH)
    with pytest.raises(GitError, match="does not apply to origin/main") as err:
        repo.check_patch(PATCH.replace("-timeout: 1", "-timeout: 7"))
    assert not err.value.retryable
    assert git(repos.clone, "status", "--porcelain") == ""  # the clone's own index untouched
    wt = repo.prepare_worktree(INCIDENT, repos.worktrees)
    assert repo.apply_patch(wt, PATCH) == "1\t1\tconfig/app.yaml"
    assert repo.apply_patch(wt, PATCH) == "1\t1\tconfig/app.yaml"  # a retried step: applied already
    assert (wt.path / "config/app.yaml").read_text() == "timeout: 10\n"
    assert git(wt.path, "diff", "--cached", "--name-only") == "config/app.yaml"  # --index
    other = repo.prepare_worktree(INCIDENT + "2", repos.worktrees)
    (other.path / "config/app.yaml").write_text("timeout: 2\n")  # an earlier step changed the file
    git(other.path, "add", "config/app.yaml")
    with pytest.raises(GitError, match="does not apply to selfheal/"):
        repo.apply_patch(other, PATCH)
