"""Recent changes: a real git repository with commits at chosen dates."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.git.history import GitHistory, InvalidInput, NotARepository, check_path
from investigation.changes import MAX_DIFF_LINES, gather_changes, owning_service, path_matches, recent_changes

ALERT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _git(repo: Path, *args: str, when: datetime | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Alice",
        "GIT_AUTHOR_EMAIL": "alice@example.com",
        "GIT_COMMITTER_NAME": "Alice",
        "GIT_COMMITTER_EMAIL": "alice@example.com",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = when.isoformat()
    out = subprocess.run(
        ["git", "-c", "commit.gpgSign=false", "-c", "core.hooksPath=/dev/null", *args],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _commit(repo: Path, when: datetime, message: str, files: dict[str, str]) -> str:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        _git(repo, "add", name)
    _git(repo, "commit", "-q", "-m", message, when=when)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "app"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    shas = {
        "old": _commit(path, ALERT - timedelta(hours=5), "old change", {"README.md": "hello\n"}),
        "cart": _commit(
            path,
            ALERT - timedelta(minutes=45),
            "cart: raise pool size",
            {"services/cart/config.yaml": "pool: 10\nretries: 3\n", "docs/cart.md": "x\n"},
        ),
        "docs": _commit(
            path, ALERT - timedelta(minutes=5), "docs: typo", {"README.md": "hello world\nbye\n"}
        ),
        "after": _commit(path, ALERT + timedelta(minutes=5), "after the alert", {"services/cart/x": "1\n"}),
    }
    return path, shas


def test_window_filtering_scoring_and_stats(repo: tuple[Path, dict[str, str]]) -> None:
    path, shas = repo
    changes = recent_changes(
        path,
        name="app",
        before=ALERT,
        window_seconds=3600,
        service_paths=["services/cart/*"],
        url_template="https://git.example/{repo}/commit/{sha}",
    )
    assert [c.sha for c in changes] == [shas["cart"], shas["docs"]]  # old and after are outside
    cart, docs = changes
    assert cart.score == pytest.approx(0.25 + 1.0)  # 45 min into a 60 min window, touches the service
    assert docs.score == pytest.approx(1 - 5 / 60, abs=1e-3)
    assert cart.paths == ["docs/cart.md", "services/cart/config.yaml"]
    assert (cart.insertions, cart.deletions) == (3, 0)
    assert (docs.insertions, docs.deletions) == (2, 1)
    assert cart.author == "Alice"
    assert cart.summary == "cart: raise pool size"
    assert cart.committed_at == ALERT - timedelta(minutes=45)
    assert cart.repo == "app"
    assert cart.url == f"https://git.example/app/commit/{shas['cart']}"


def test_without_path_match_closeness_decides(repo: tuple[Path, dict[str, str]]) -> None:
    path, shas = repo
    changes = recent_changes(path, name="app", before=ALERT, window_seconds=3600, service_paths=[])
    assert [c.sha for c in changes] == [shas["docs"], shas["cart"]]
    wide = recent_changes(path, name="app", before=ALERT, window_seconds=6 * 3600, service_paths=[], limit=1)
    assert [c.sha for c in wide] == [shas["docs"]]
    naive = recent_changes(
        path, name="app", before=ALERT.replace(tzinfo=None), window_seconds=600, service_paths=[]
    )
    assert [c.sha for c in naive] == [shas["docs"]]


def test_path_matches() -> None:
    assert path_matches("services/cart/config.yaml", ["services/cart/*"])
    assert path_matches("services/cart/deep/x.yaml", ["services/cart"])
    assert path_matches("deploy/cart.yaml", ["*.json", "deploy/cart.*"])
    assert not path_matches("services/cartography/x", ["services/cart"])
    assert not path_matches("README.md", [""])


def test_gather_changes(repo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, shas = repo
    section = gather_changes(
        {"app": path}, before=ALERT, window_seconds=3600, service_paths=["services/cart/*"]
    )
    assert section.source == "changes"
    assert section.status == "ok"
    assert [c.sha for c in section.changes] == [shas["cart"], shas["docs"]]

    missing = gather_changes({"gone": tmp_path / "nope"}, before=ALERT, window_seconds=3600)
    assert missing.status == "failed"
    assert "gone" in missing.message

    mixed = gather_changes({"app": path, "gone": tmp_path / "nope"}, before=ALERT, window_seconds=3600)
    assert mixed.status == "ok" and "gone" in mixed.message and len(mixed.changes) == 2

    quiet = gather_changes({"app": path}, before=ALERT - timedelta(days=1), window_seconds=60)
    assert quiet.status == "empty"
    assert gather_changes({}, before=ALERT).status == "skipped"
    truncated = gather_changes({"app": path}, before=ALERT, window_seconds=3600, limit=1)
    assert truncated.status == "truncated" and len(truncated.changes) == 1


def test_empty_repository(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    assert recent_changes(tmp_path, name="x", before=ALERT, window_seconds=60, service_paths=[]) == []


def test_selfheal_fix_commits_are_marked_and_service_paths_flagged(tmp_path: Path) -> None:
    path = tmp_path / "cfg"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    human = _commit(
        path, ALERT - timedelta(minutes=10), "checkout: new timeout", {"services/checkout/a.yaml": "1\n"}
    )
    fix = _commit(
        path,
        ALERT - timedelta(seconds=1),
        "selfheal: revert for checkout\n\nSelfheal-Incident: abc123def456-q1w2e3",
        {"services/checkout/a.yaml": "2\n"},
    )
    found = {
        c.sha: c
        for c in recent_changes(
            path, name="cfg", before=ALERT, window_seconds=3600, service_paths=["services/checkout/**"]
        )
    }
    assert found[fix].selfheal_incident == "abc123def456-q1w2e3" and found[fix].touches_service
    assert found[human].selfheal_incident == "" and found[human].touches_service
    elsewhere = recent_changes(path, name="cfg", before=ALERT, window_seconds=3600, service_paths=["docs/**"])
    assert not any(c.touches_service for c in elsewhere)


def test_one_process_history_matches_gitpython_per_commit(tmp_path: Path) -> None:
    """GitHistory.commits reads every commit and its diff from one `git log`; it must say what
    GitPython's commit objects and per-commit `stats` say: root commit, binary file, rename,
    deletion, merge, odd path names, a multi-line subject, a non-UTC committer zone."""
    import git

    path = tmp_path / "odd"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    t = ALERT - timedelta(hours=1)
    _commit(path, t, "root", {"a.txt": "1\n2\n3\n", "dir with space/ü.yaml": "x: 1\n"})
    (path / "logo.bin").write_bytes(bytes(range(256)))
    _git(path, "add", "logo.bin")
    _commit(path, t + timedelta(minutes=1), "binary and a tab\tin the name", {'we"ird\tname.txt': "q\n"})
    _git(path, "mv", "a.txt", "b.txt")
    _commit(path, t + timedelta(minutes=2), "rename\nsecond subject line\n\nbody", {"b.txt": "1\n2\n3\n4\n"})
    _git(path, "checkout", "-q", "-b", "side")
    zone = timezone(timedelta(hours=5, minutes=30))
    _commit(path, (t + timedelta(minutes=3)).astimezone(zone), "side work", {"side.txt": "s\n"})
    _git(path, "checkout", "-q", "main")
    _git(path, "rm", "-q", "dir with space/ü.yaml")
    _commit(path, t + timedelta(minutes=4), "delete\n\nSelfheal-Incident: abc", {"c.txt": "c\n"})
    _git(path, "merge", "-q", "--no-ff", "-m", "merge side", "side", when=t + timedelta(minutes=5))

    ours = GitHistory(path).commits("HEAD")
    repo = git.Repo(path)
    try:
        theirs = list(repo.iter_commits("HEAD"))
        assert [c.sha for c in ours] == [c.hexsha for c in theirs] and len(ours) == 6
        for mine, commit in zip(ours, theirs, strict=True):
            stats = commit.stats
            assert sorted(mine.paths) == sorted(str(p) for p in stats.files), commit.summary
            assert mine.insertions == stats.total["insertions"], commit.summary
            assert mine.deletions == stats.total["deletions"], commit.summary
            assert mine.committed_at == commit.committed_datetime.astimezone(UTC)
            assert mine.committed_at.tzinfo == UTC
            assert (mine.author_name, mine.author_email) == (commit.author.name, commit.author.email)
            assert mine.summary == commit.summary and mine.message == commit.message
    finally:
        repo.close()


def test_history_refuses_options_ranges_and_escaping_paths(repo: tuple[Path, dict[str, str]]) -> None:
    """Revisions and paths may come from a language model: nothing reaches git as an option."""
    path, shas = repo
    history = GitHistory(path)
    assert history.resolve("HEAD") == shas["after"]
    assert history.resolve(shas["cart"][:10]) == shas["cart"]
    assert history.resolve("HEAD~2") == shas["cart"]
    for rev in ("--output=/tmp/x", "-p", "HEAD..main", "main...HEAD", "HEAD:README.md", "a b", ""):
        with pytest.raises(InvalidInput, match="invalid git revision"):
            history.resolve(rev)
    with pytest.raises(InvalidInput, match="names no commit"):
        history.resolve("no-such-branch")
    for bad in ("-p", "--output=x", "/etc/passwd", "../x", "a/../../b", "a//b", "a\\b", ""):
        with pytest.raises(InvalidInput, match="invalid path"):
            check_path(bad)
    assert check_path("services/cart/") == "services/cart/"


def test_history_log_show_diff(repo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, shas = repo
    history = GitHistory(path)
    lines = history.log("HEAD", max_count=2).splitlines()
    assert [ln.split()[0] for ln in lines] == [shas["after"][:7], shas["docs"][:7]]
    assert lines[1].endswith(" Alice: docs: typo")
    assert history.log("HEAD", path="services/cart/config.yaml").split()[0] == shas["cart"][:7]
    assert history.log(shas["old"], path="services") == ""

    shown = history.show(shas["cart"], path="services/cart/config.yaml")
    assert shown.startswith(f"commit {shas['cart']}\nAuthor: Alice\n")
    assert "+pool: 10" in shown and "docs/cart.md" not in shown
    assert "+pool: 10" in history.diff(shas["old"], "HEAD")
    assert history.diff("HEAD", "HEAD") == ""
    assert history.diff(shas["old"], shas["cart"], path="README.md") == ""

    with pytest.raises(NotARepository):
        GitHistory(tmp_path / "nope")
    with pytest.raises(NotARepository):
        GitHistory(path / "services")  # inside a repository is not a repository
    _git(tmp_path, "init", "-q", "empty")
    assert GitHistory(tmp_path / "empty").head() is None


def test_suspects_carry_their_diff_bounded_and_redacted(tmp_path: Path) -> None:
    path = tmp_path / "app"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    _commit(path, ALERT - timedelta(hours=3), "base", {"services/cart/db.yaml": "pool: 10\n"})
    pool = _commit(
        path,
        ALERT - timedelta(minutes=20),
        "cart: pool 10 -> 2",
        {"services/cart/db.yaml": "pool: 2\npassword: hunter2-very-secret\n"},
    )
    big = _commit(
        path,
        ALERT - timedelta(minutes=10),
        "payments: generated table",
        {"services/payments/table.csv": "".join(f"row {i}\n" for i in range(500))},
    )
    section = gather_changes(
        {"app": path},
        before=ALERT,
        window_seconds=3600,
        service_paths=["services/cart/**"],
        service="cart",
        service_templates=["services/{service}/**"],
        depends_on=["payments"],
    )
    by_sha = {c.sha: c for c in section.changes}
    diff = by_sha[pool].diff
    assert "-pool: 10" in diff and "+pool: 2" in diff and "+++ b/services/cart/db.yaml" in diff
    assert "hunter2" not in diff and "[REDACTED]" in diff, (
        "a secret in a diff never reaches a ticket or model"
    )
    lines = by_sha[big].diff.splitlines()
    assert len(lines) == MAX_DIFF_LINES + 1 and "more diff lines truncated" in lines[-1]
    assert by_sha[pool].service == "cart" and by_sha[big].service == "payments"
    assert section.depends_on == ["payments"]


def test_changes_source_attributes_changes_and_records_dependencies(tmp_path: Path) -> None:
    from investigation.settings import EvidenceSettings
    from investigation.sources import ChangesSource
    from models.incident import IncidentView, Stage, TrackedAlert

    path = tmp_path / "app"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    sha = _commit(path, ALERT - timedelta(minutes=5), "ledger: fsync off", {"db/ledger.conf": "fsync=off\n"})
    settings = EvidenceSettings.model_validate(
        {
            "default_service": {"paths": ["services/{service}/**"]},
            "services": {
                "checkout": {"paths": ["services/checkout/**"], "depends_on": ["ledger", "payments"]},
                "ledger": {"paths": ["db/ledger.conf"]},
            },
        }
    )
    alert = TrackedAlert(
        fingerprint="f", status="firing", labels={"service": "checkout"}, annotations={}, startsAt=ALERT
    )
    view = IncidentView(
        id="i",
        group_id="g",
        group_key="k",
        receiver="r",
        stage=Stage.INVESTIGATING,
        status="firing",
        service="checkout",
        opened_at=ALERT,
        alerts=[alert],
    )
    section = ChangesSource(settings, {"app": path}).gather(view)
    [change] = section.changes
    assert change.sha == sha and change.service == "ledger" and not change.touches_service
    assert "+fsync=off" in change.diff
    assert section.depends_on == ["ledger", "payments"]


def test_owning_service() -> None:
    assert owning_service(["services/pay/a.py"], templates=["services/{service}/**"]) == "pay"
    assert (
        owning_service(["x/a.py"], own="cart", own_paths=["x/**"], templates=["services/{service}/**"])
        == "cart"
    )
    assert owning_service(["README.md"], templates=["services/{service}/**"]) == ""
    assert owning_service(["ops/db.conf"], others={"db": ["ops/db.conf"]}) == "db"


def test_history_patch_is_bounded(repo: tuple[Path, dict[str, str]]) -> None:
    path, shas = repo
    history = GitHistory(path)
    patch = history.patch(shas["cart"], max_lines=4, max_line_chars=20)
    lines = patch.splitlines()
    assert len(lines) == 5 and lines[0].startswith("diff --git") and "more diff lines truncated" in lines[-1]
    assert all(len(line) <= 21 for line in lines[:4])
    with pytest.raises(InvalidInput):
        history.patch("--output=/tmp/x")
