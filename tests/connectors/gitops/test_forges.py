"""The forge connectors against the GitHub and GitLab test servers, through the real PyGithub and
python-gitlab: one request per branch whatever is retried, merges only with the head selfheal
pushed, and the forges' refusals mapped to retryable or not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.gitops.forge import Forge, ForgeError
from connectors.gitops.gitea import GiteaForge
from connectors.gitops.github import GithubForge
from connectors.gitops.gitlab import GitlabForge
from connectors.gitops.settings import ForgeSettings
from tests.support.forges import ConfigRepo, GiteaFake, GithubFake, GitlabFake, make_config_repo
from tests.support.forges.repos import git

BRANCH = "selfheal/0123456789ab-abc123"


@pytest.fixture
def repo(tmp_path: Path) -> ConfigRepo:
    """A remote with `main` and a fix branch one commit ahead of it."""
    repo = make_config_repo(tmp_path / "repo", "cart")
    git(repo.work, "checkout", "-q", "-b", BRANCH)
    (repo.work / "services/cart/config.yaml").write_text("pool:\n  size: 20\n")
    git(repo.work, "commit", "-q", "-am", "selfheal: raise pool")
    git(repo.work, "push", "-q", "origin", BRANCH)
    return repo


@pytest.fixture
def github(repo: ConfigRepo) -> Iterator[GithubFake]:
    with GithubFake() as fake:
        fake.add_token("bot", "selfheal-bot")
        fake.add_token("alice", "alice")
        fake.add_token("reader", "auditor", write=False)
        fake.add_repo("acme/config", repo.remote)
        yield fake


@pytest.fixture
def gitlab(repo: ConfigRepo) -> Iterator[GitlabFake]:
    with GitlabFake() as fake:
        fake.add_token("bot", "selfheal-bot")
        fake.add_token("reader", "reporter", write=False)
        fake.add_project("acme/infra/config", repo.remote, pipelines=True)
        yield fake


def gh(fake: GithubFake, token: str = "bot", project: str = "acme/config") -> GithubForge:
    return GithubForge(ForgeSettings(kind="github", url=fake.url, project=project, token=SecretStr(token)))


def gl(fake: GitlabFake, token: str = "bot", project: str = "acme/infra/config") -> GitlabForge:
    return GitlabForge(ForgeSettings(kind="gitlab", url=fake.url, project=project, token=SecretStr(token)))


def forges(github: GithubFake, gitlab: GitlabFake) -> list[Forge]:
    return [gh(github), gl(gitlab)]


def test_a_retry_finds_the_request_and_never_opens_a_second(
    github: GithubFake, gitlab: GitlabFake, repo: ConfigRepo
) -> None:
    for forge in forges(github, gitlab):
        first, opened = forge.open_or_find(BRANCH, "main", "fix", "body", ["selfheal"])
        again, opened_again = forge.open_or_find(BRANCH, "main", "fix", "body", ["selfheal", "gitops"])
        assert opened and not opened_again and again.number == first.number
        assert first.status == "open" and first.branch == BRANCH and first.head_sha == repo.head(BRANCH)
        # A create that races with another (or runs after a lost answer) is told "already exists":
        with pytest.raises(ForgeError) as err:
            forge.create(BRANCH, "main", "fix", "body", [])
        assert (
            err.value.status in (409, 422) and "already exist" in str(err.value) and not err.value.retryable
        )
    assert len(github.repos["acme/config"].pulls) == 1 and github.repos["acme/config"].pulls[1].labels == [
        "selfheal",
        "gitops",
    ]
    assert len(gitlab.projects["acme/infra/config"].mrs) == 1
    assert gitlab.projects["acme/infra/config"].mrs[1].labels == ["selfheal", "gitops"]


def test_github_auto_merge_waits_for_the_check_then_merges_on_the_remote(
    github: GithubFake, repo: ConfigRepo
) -> None:
    github.repos["acme/config"].required_check = True
    forge = gh(github)
    pr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    assert forge.auto_merge(pr.number, pr.head_sha) == "auto-merge enabled"
    assert forge.auto_merge(pr.number, pr.head_sha) == "auto-merge already enabled"
    assert forge.get(pr.number).status == "open" and repo.pool_size() == 5
    github.checks_pass("acme/config", pr.number)
    merged = forge.get(pr.number)
    assert merged.status == "merged" and merged.merged_by == "selfheal-bot"
    assert merged.merge_commit == repo.head() and repo.pool_size() == 20


def test_github_merges_at_once_when_clean_and_never_a_moved_head(
    github: GithubFake, repo: ConfigRepo
) -> None:
    """GitHub refuses auto-merge on a pull request that can merge now ("clean status"): selfheal
    merges over REST with `sha`, which GitHub refuses (409) once the branch moved."""
    forge = gh(github)
    pr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    moved = repo.push_to(BRANCH, "teammate\n")
    assert forge.auto_merge(pr.number, pr.head_sha) == f"head moved to {moved[:12]}: not merging"
    with pytest.raises(ForgeError) as err:  # even asked directly, GitHub refuses the stale head
        forge._call("merge", lambda: forge._repo.get_pull(pr.number).merge(sha=pr.head_sha))
    assert err.value.status == 409 and "Head branch was modified" in str(err.value)
    assert forge.get(pr.number).status == "open" and repo.pool_size() == 5
    now = forge.get(pr.number)
    assert forge.auto_merge(pr.number, now.head_sha).startswith("merged as ")
    assert forge.get(pr.number).status == "merged"


def test_github_auto_merge_disallowed_is_an_error_for_a_person(github: GithubFake) -> None:
    github.repos["acme/config"].required_check = True
    github.repos["acme/config"].allow_auto_merge = False
    forge = gh(github)
    pr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    with pytest.raises(ForgeError) as err:
        forge.auto_merge(pr.number, pr.head_sha)
    assert "Auto merge is not allowed" in str(err.value) and not err.value.retryable


def test_gitlab_merge_when_pipeline_succeeds_and_cancel(gitlab: GitlabFake, repo: ConfigRepo) -> None:
    forge = gl(gitlab)
    mr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    assert forge.auto_merge(mr.number, mr.head_sha) == "merge when pipeline succeeds set"
    forge.cancel_auto_merge(mr.number)
    assert not forge.get(mr.number).auto_merge
    forge.auto_merge(mr.number, mr.head_sha)
    gitlab.pipeline_succeeds("acme/infra/config", mr.number)
    merged = forge.get(mr.number)
    assert merged.status == "merged" and merged.merge_commit == repo.head() and repo.pool_size() == 20


def test_gitlab_refuses_a_stale_sha(gitlab: GitlabFake, repo: ConfigRepo) -> None:
    gitlab.projects["acme/infra/config"].pipelines = False
    forge = gl(gitlab)
    mr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    moved = repo.push_to(BRANCH, "teammate\n")
    assert forge.auto_merge(mr.number, mr.head_sha) == f"head moved to {moved[:12]}: not merging"
    with pytest.raises(ForgeError) as err:
        forge._call("merge", lambda: forge._mr(mr.number).merge(sha=mr.head_sha))
    assert err.value.status == 409 and "SHA does not match HEAD" in str(err.value)


def test_closed_requests_say_who_and_why(github: GithubFake, gitlab: GitlabFake) -> None:
    for forge, closer in ((gh(github), "selfheal-bot"), (gl(gitlab), "selfheal-bot")):
        pr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
        forge.comment(pr.number, "not during the freeze")
        forge.close(pr.number)
        forge.close(pr.number)  # closing again is a no-op
        closed = forge.get(pr.number)
        assert closed.status == "closed" and forge.closed_by(pr.number) == closer
        assert forge.comments(pr.number) == [("selfheal-bot", "not during the freeze")]
        # A closed request is found again by its branch, never replaced by a new one:
        assert forge.open_or_find(BRANCH, "main", "fix", "body", []) == (closed, False)


@pytest.mark.parametrize("which", ["github", "gitlab"])
def test_refusals_are_mapped(which: str, github: GithubFake, gitlab: GitlabFake) -> None:
    make = (
        (lambda token, project: gh(github, token, project))
        if which == "github"
        else (lambda token, project: gl(gitlab, token, project))
    )
    project = "acme/config" if which == "github" else "acme/infra/config"
    with pytest.raises(ForgeError) as bad_token:
        make("wrong", project).find(BRANCH)
    assert bad_token.value.status == 401 and not bad_token.value.retryable
    assert "check the forge token" in str(bad_token.value)
    with pytest.raises(ForgeError) as unknown:
        make("bot", "acme/nope").find(BRANCH)
    assert unknown.value.status == 404 and not unknown.value.retryable
    with pytest.raises(ForgeError) as read_only:
        make("reader", project).create(BRANCH, "main", "fix", "body", [])
    assert read_only.value.status == 403 and not read_only.value.retryable
    assert "lacks a permission" in str(read_only.value)
    with pytest.raises(ForgeError) as no_branch:
        make("bot", project).create("selfheal/missing", "main", "fix", "body", [])
    assert no_branch.value.status in (422,) and not no_branch.value.retryable


@pytest.fixture
def gitea(repo: ConfigRepo) -> Iterator[GiteaFake]:
    with GiteaFake() as fake:
        fake.add_token("bot", "selfheal-bot")
        fake.add_token("reader", "auditor", write=False)
        fake.add_repo("acme/config", repo.remote, required_check=True)
        yield fake


def gt(fake: GiteaFake, token: str = "bot", project: str = "acme/config") -> GiteaForge:
    return GiteaForge(ForgeSettings(kind="gitea", url=fake.url, project=project, token=SecretStr(token)))


def test_gitea_request_once_scheduled_merge_and_refusals(gitea: GiteaFake, repo: ConfigRepo) -> None:
    forge = gt(gitea)
    pr, opened = forge.open_or_find(BRANCH, "main", "fix", "body", ["selfheal"])
    again, opened_again = forge.open_or_find(BRANCH, "main", "fix", "body", ["selfheal"])
    assert opened and not opened_again and again.number == pr.number
    with pytest.raises(ForgeError) as dup:
        forge.create(BRANCH, "main", "fix", "body", [])
    assert dup.value.status == 409 and "already exists" in str(dup.value)
    assert forge.auto_merge(pr.number, pr.head_sha) == "merge scheduled for when checks succeed"
    assert forge.auto_merge(pr.number, pr.head_sha) == "merge already scheduled for when checks succeed"
    forge.cancel_auto_merge(pr.number)
    forge.cancel_auto_merge(pr.number)  # nothing scheduled: a no-op
    forge.auto_merge(pr.number, pr.head_sha)
    gitea.checks_pass("acme/config", pr.number)
    merged = forge.get(pr.number)
    assert (
        merged.status == "merged"
        and merged.merge_commit == repo.head()
        and merged.merged_by == "selfheal-bot"
    )
    assert gitea.repos["acme/config"].pulls[pr.number].labels == ["selfheal"]
    # Gitea answers 200 and drops a label name the repository lacks: selfheal says so.
    with pytest.raises(ForgeError) as unknown_label:
        forge.add_labels(pr.number, ["selfheal", "no-such-label"])
    assert "no label no-such-label in acme/config" in str(unknown_label.value)
    assert not unknown_label.value.retryable
    assert gitea.repos["acme/config"].pulls[pr.number].labels == ["selfheal"]
    with pytest.raises(ForgeError) as bad:
        gt(gitea, "wrong").find(BRANCH)
    assert bad.value.status == 401 and not bad.value.retryable


def test_gitea_never_merges_a_moved_head(gitea: GiteaFake, repo: ConfigRepo) -> None:
    gitea.repos["acme/config"].required_check = False
    forge = gt(gitea)
    pr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    moved = repo.push_to(BRANCH, "teammate\n")
    assert forge.auto_merge(pr.number, pr.head_sha) == f"head moved to {moved[:12]}: not merging"
    with pytest.raises(ForgeError) as err:
        forge._send(
            "merge", "POST", f"/pulls/{pr.number}/merge", json={"Do": "merge", "head_commit_id": pr.head_sha}
        )
    assert err.value.status == 409 and "head out of date" in str(err.value)
    forge.close(pr.number)
    assert forge.get(pr.number).status == "closed" and repo.pool_size() == 5


def test_a_missing_token_names_the_setting(github: GithubFake) -> None:
    with pytest.raises(ForgeError) as err:
        GithubForge(ForgeSettings(kind="github", url=github.url, project="acme/config"))
    assert not err.value.retryable and "SELFHEAL_GITOPS__FORGES__<REPO>__TOKEN" in str(err.value)


def test_github_unstable_is_merged_at_once(github: GithubFake, repo: ConfigRepo) -> None:
    """Only a check that is not required is pending or failing: GitHub calls it `unstable`, merges
    it, and refuses to enable auto-merge on it ("Pull request is in unstable status")."""
    github.repos["acme/config"].optional_check_failing = True
    forge = gh(github)
    pr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    assert pr.mergeable  # the wait asks for the merge on its next look, too
    with pytest.raises(ForgeError) as refused:  # what the fake answers GitHub's way
        forge._call("enable", lambda: forge._repo.get_pull(pr.number).enable_automerge())
    assert "unstable status" in str(refused.value)
    assert forge.auto_merge(pr.number, pr.head_sha).startswith("merged as ")
    assert forge.get(pr.number).status == "merged" and repo.pool_size() == 20


def test_gitlab_without_a_pipeline_merges_now_with_the_sha(gitlab: GitlabFake, repo: ConfigRepo) -> None:
    """GitLab answers 405 to "merge when pipeline succeeds" when no pipeline runs (gitlab#217710):
    selfheal merges a `mergeable` request at once instead (with `sha`, like every merge it makes)."""
    gitlab.projects["acme/infra/config"].pipelines = False
    forge = gl(gitlab)
    mr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    with pytest.raises(ForgeError) as refused:
        forge._call("mwps", lambda: forge._mr(mr.number).merge(merge_when_pipeline_succeeds=True))
    assert refused.value.status == 405
    assert forge.auto_merge(mr.number, mr.head_sha) == f"merged as {repo.head()[:12]}"


def test_gitlab_before_its_pipeline_exists_asks_again_later(gitlab: GitlabFake, repo: ConfigRepo) -> None:
    """With "Pipelines must succeed" and the pipeline not created yet, GitLab can neither merge nor
    schedule (405, gitlab#353984). Not an error: the next look schedules it once it runs."""
    project = gitlab.projects["acme/infra/config"]
    project.pipelines, project.pipeline_must_succeed = False, True
    forge = gl(gitlab)
    mr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    said = forge.auto_merge(mr.number, mr.head_sha)
    assert said == "GitLab cannot merge it yet (ci_must_pass): asks again once it is mergeable"
    assert forge.get(mr.number).status == "open" and not forge.get(mr.number).auto_merge
    gitlab.pipeline_starts("acme/infra/config", mr.number)
    assert forge.auto_merge(mr.number, mr.head_sha) == "merge when pipeline succeeds set"
    gitlab.pipeline_succeeds("acme/infra/config", mr.number)
    assert forge.get(mr.number).status == "merged" and repo.pool_size() == 20


def test_gitlab_merge_permission_is_a_401_for_a_person(gitlab: GitlabFake) -> None:
    """GitLab answers 401, not 403, when the user may not merge into the target branch."""
    gitlab.add_token("dev", "developer", merge=False)
    mr, _ = gl(gitlab).open_or_find(BRANCH, "main", "fix", "body", [])
    with pytest.raises(ForgeError) as err:
        gl(gitlab, "dev").auto_merge(mr.number, mr.head_sha)
    assert err.value.status == 401 and not err.value.retryable
    assert "may not merge into main" in str(err.value) and "check the forge token" not in str(err.value)
    with pytest.raises(ForgeError) as not_set:  # cancelling what is not set: GitLab's 406
        gl(gitlab)._call("cancel", lambda: gl(gitlab)._mr(mr.number).cancel_merge_when_pipeline_succeeds())
    assert not_set.value.status == 406
    gl(gitlab).cancel_auto_merge(mr.number)  # selfheal only cancels what is set: a no-op


def test_gitea_refuses_what_gitea_refuses(gitea: GiteaFake, repo: ConfigRepo) -> None:
    gitea.add_token("dev", "developer", merge=False)
    forge = gt(gitea)
    pr, _ = forge.open_or_find(BRANCH, "main", "fix", "body", [])
    with pytest.raises(ForgeError) as not_allowed:
        gt(gitea, "dev").auto_merge(pr.number, pr.head_sha)
    assert not_allowed.value.status == 405 and "User not allowed to merge PR" in str(not_allowed.value)
    with pytest.raises(ForgeError) as bad_style:
        forge._send("merge", "POST", f"/pulls/{pr.number}/merge", json={"Do": "octopus"})
    assert bad_style.value.status == 422
    assert forge.auto_merge(pr.number, pr.head_sha) == "merge scheduled for when checks succeed"
    with pytest.raises(ForgeError) as others:  # only its scheduler (or an admin) cancels it
        gt(gitea, "dev").cancel_auto_merge(pr.number)
    assert others.value.status == 403
    with pytest.raises(ForgeError) as twice:
        forge._send(
            "merge",
            "POST",
            f"/pulls/{pr.number}/merge",
            json={"Do": "merge", "merge_when_checks_succeed": True},
        )
    assert twice.value.status == 409 and "is already scheduled to auto merge" in str(twice.value)
