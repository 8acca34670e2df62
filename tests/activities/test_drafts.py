"""The draft activity on real git repositories, the local tracker and the incident store: a healed
proposal is drafted, attached, recorded and pushed as one branch, and with a forge proposed as one
pull request (on the GitHub test server); a retry repeats nothing; a draft that does not lint, or
an incident that was not healed by an approved fix, is refused with the reason on the ticket."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from activities.drafts import DraftActivities
from activities.remediation_settings import RemediationSettings
from connectors.base import ConnectorError, TicketContent
from connectors.git.process import GitError
from connectors.git.publish import DRAFT_TRAILER, publish_file
from connectors.git.repo import GitRepo
from connectors.gitops.forge import Forge
from connectors.gitops.gitea import GiteaForge
from connectors.gitops.github import GithubForge
from connectors.gitops.settings import ForgeSettings
from connectors.incident_store import IncidentStore
from connectors.local_tracker import LocalTracker
from models.incident import (
    Decision,
    DecisionKind,
    IncidentView,
    Outcome,
    Proposal,
    RemediationSummary,
    Stage,
    TicketRef,
    TrackedAlert,
)
from models.investigation import Investigation, ProposedFix, RevertRef
from pages.document import Document
from playbooks.loader import load_file
from playbooks.proposal import ServiceDefaults
from tests.support.forges import GiteaFake, GithubFake

STARTS = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
SERVICE = "shop"
LABELS = {
    "alertname": "HighLatency",
    "service": SERVICE,
    "severity": "warning",
    "pod": "shop-6f7d8c9b5a-k2x9z",
}


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    full = {**os.environ, **(env or {})}
    out = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env=full,
    )
    return out.stdout.strip()


def make_repo(root: Path, name: str, files: dict[str, str]) -> tuple[Path, Path]:
    """A bare remote seeded with `files` on main, and a clone (what selfheal owns)."""
    remote, seed, work = root / f"{name}.git", root / f"{name}-seed", root / name
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(root, "init", "-q", "-b", "main", str(seed))
    for path, text in files.items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_text(text)
    git(seed, "add", ".")
    git(seed, "commit", "-q", "-m", "initial")
    git(seed, "push", "-q", str(remote), "main:main")
    git(root, "clone", "-q", "-b", "main", str(remote), str(work))
    return remote, work


def bad_commit(work: Path) -> str:
    """The change the approved revert undid: committed 5 s before the alert started."""
    path = work / "services" / SERVICE / "config.yaml"
    path.write_text("page_size: 2000\n")
    stamp = f"{int((STARTS - timedelta(seconds=5)).timestamp())} +0000"
    git(work, "commit", "-q", "-am", "products: 2000 per page", env={"GIT_COMMITTER_DATE": stamp})
    return git(work, "rev-parse", "HEAD")


def healed_view(
    ticket: TicketRef, sha: str, *, outcome: Outcome = Outcome.HEALED_AFTER_APPROVAL
) -> IncidentView:
    return IncidentView(
        id="d1a2b3c4-1",
        group_id="d1a2b3c4",
        group_key='{}:{alertname="HighLatency"}',
        receiver="selfheal",
        stage=Stage.CLOSED,
        status="resolved",
        outcome=outcome,
        service=SERVICE,
        alertname="HighLatency",
        opened_at=STARTS,
        closed_at=STARTS + timedelta(minutes=3),
        ticket=ticket,
        alerts=[
            TrackedAlert(fingerprint="f1", status="resolved", labels=LABELS, annotations={}, startsAt=STARTS)
        ],
        decision=Decision(decision=DecisionKind.APPROVE, by="alice"),
        proposal=Proposal(playbook="proposed-revert", mode="approve", target=SERVICE, kind="revert"),
        investigation=Investigation(
            investigator="builtin",
            summary="s",
            proposed_fix=ProposedFix(kind="manual", revert=RevertRef(repo="config", sha=sha)),
        ),
        remediations=[RemediationSummary(playbook="proposed-revert", outcome="healed", approved_by="alice")],
    )


DEFAULTS: dict[str, Any] = {
    "repo": "config",
    "test": [{"command": {"argv": ["grep", "-q", "page_size", "services/{{ params.service }}/config.yaml"]}}],
    "deploy": [{"git_push": {"branch": "main"}}],
}


@pytest.fixture
def setup(tmp_path: Path) -> dict[str, Any]:
    _, config = make_repo(tmp_path, "config", {f"services/{SERVICE}/config.yaml": "page_size: 20\n"})
    sha = bad_commit(config)
    pb_remote, playbooks = make_repo(tmp_path, "playbooks", {"README.md": "playbooks\n"})
    tracker = LocalTracker(tmp_path / "tickets.db")
    ticket = tracker.create_or_update(
        TicketContent(incident_id="d1a2b3c4-1", summary="HighLatency", page=Document.of_text("page"))
    )
    store = IncidentStore(f"sqlite:///{tmp_path / 'incidents.db'}")
    settings = RemediationSettings.model_validate(
        {
            "repos": {"config": {"path": str(config)}, "playbooks": {"path": str(playbooks)}},
            "services": {SERVICE: DEFAULTS},
            "playbooks_repo": "playbooks",
            "playbooks_repo_dir": "playbooks",
        }
    )
    repos = settings.repos

    def open_repo(name: str) -> GitRepo:
        return GitRepo(repos[name].path, remote=repos[name].remote, base_branch=repos[name].base_branch)

    acts = DraftActivities(settings, tracker=tracker, store=lambda: store, open_repo=open_repo)
    return {
        "acts": acts,
        "tracker": tracker,
        "store": store,
        "ticket": ticket,
        "sha": sha,
        "remote": pb_remote,
    }


def branch_commits(remote: Path, branch: str) -> list[str]:
    return git(remote, "rev-list", f"refs/heads/{branch}", "^refs/heads/main").split()


def test_a_healed_proposal_is_drafted_attached_recorded_and_pushed_once(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    acts, tracker, store, ticket = setup["acts"], setup["tracker"], setup["store"], setup["ticket"]
    view = healed_view(ticket, setup["sha"])
    first = acts.draft(view, "service")
    assert first.status == "proposed" and first.name == "shop-high-latency-revert", first.message
    assert first.branch == "selfheal/draft-d1a2b3c4-1"
    commits = branch_commits(setup["remote"], first.branch)
    assert len(commits) == 1
    text = git(setup["remote"], "show", f"{commits[0]}:playbooks/shop-high-latency-revert.yaml")
    row = store.get_draft(view.id)
    assert row is not None and row.status == "proposed" and row.yaml.strip() == text.strip()
    assert f"{DRAFT_TRAILER}: {view.id}" in git(setup["remote"], "log", "-1", "--format=%B", commits[0])
    # What was pushed is a playbook the loader takes, with the revert generalized.
    (tmp_path / "out.yaml").write_text(text)
    playbook, errors = load_file(tmp_path / "out.yaml")
    assert playbook is not None, errors
    revert = playbook.spec.fix[0].git_revert
    assert revert is not None and revert.paths == ["services/{{ params.service }}/config.yaml"]
    assert "pod" in playbook.spec.params and playbook.spec.policy.mode == "approve"
    got = tracker.get(ticket.key)
    assert [a["filename"] for a in got["attachments"]] == ["shop-high-latency-revert.yaml"]
    (comment,) = [c["body"] for c in got["comments"]]
    assert "drafted playbook shop-high-latency-revert" in comment and first.branch in comment
    assert "open a pull request from it into main" in comment

    again = acts.draft(view, "service")  # a retried activity
    assert again == first
    assert branch_commits(setup["remote"], first.branch) == commits
    got = tracker.get(ticket.key)
    assert len(got["comments"]) == 1 and len(got["attachments"]) == 1


def test_an_incident_not_healed_by_an_approved_fix_is_refused_on_the_ticket(setup: dict[str, Any]) -> None:
    acts, tracker, ticket = setup["acts"], setup["tracker"], setup["ticket"]
    view = healed_view(ticket, setup["sha"], outcome=Outcome.REJECTED)
    result = acts.draft(view, "service")
    assert result.status == "refused" and "not healed by an approved proposed fix" in result.message
    row = setup["store"].get_draft(view.id)
    assert row is not None and row.status == "refused" and row.name == ""
    assert "drafted no playbook" in tracker.get(ticket.key)["comments"][0]["body"]
    assert not git(setup["remote"], "branch", "--list", "selfheal/*")


def test_a_draft_that_does_not_lint_is_never_proposed(setup: dict[str, Any], tmp_path: Path) -> None:
    """The service's deploy restarts a workload in a namespace outside kube.namespaces: the draft
    fails the real lint, so it is refused, not attached and not pushed."""
    base: DraftActivities = setup["acts"]
    deploy = [
        {"kube": {"verb": "rollout_restart", "kind": "Deployment", "namespace": "other", "name": "shop"}}
    ]
    settings = base.settings.model_copy(
        update={"services": {SERVICE: ServiceDefaults.model_validate({**DEFAULTS, "deploy": deploy})}}
    )
    acts = DraftActivities(
        settings, tracker=base.tracker, store=base.store, open_repo=base.open_repo, kube_namespaces=["prod"]
    )
    view = healed_view(setup["ticket"], setup["sha"])
    result = acts.draft(view, "service")
    assert result.status == "refused" and "does not lint" in result.message
    assert "namespace 'other' is not in kube.namespaces" in result.message
    got = setup["tracker"].get(setup["ticket"].key)
    assert got["attachments"] == [] and "does not lint" in got["comments"][0]["body"]
    assert not git(setup["remote"], "branch", "--list", "selfheal/*")


def test_publish_is_idempotent_and_never_takes_over_a_branch(tmp_path: Path) -> None:
    remote, work = make_repo(tmp_path, "pb", {"README.md": "x\n"})
    repo = GitRepo(work)
    kw: dict[str, Any] = {
        "path": "a/p.yaml",
        "content": "name: p\n",
        "message": "add p",
        "when": 1_700_000_000,
    }
    first = publish_file(repo, incident_id="inc-1", **kw)
    assert first.pushed and first.remote == "origin"
    second = publish_file(repo, incident_id="inc-1", **kw)
    assert not second.pushed and second.commit == first.commit
    assert len(branch_commits(remote, "selfheal/draft-inc-1")) == 1
    # A rebuilt commit (lost answer, local state gone) is the same commit: dated by `when`.
    git(work, "update-ref", "-d", "refs/remotes/origin/selfheal/draft-inc-1")
    assert publish_file(repo, incident_id="inc-1", **kw).commit == first.commit
    # Someone else's branch of that name is not overwritten.
    git(work, "push", "-q", "origin", "main:refs/heads/selfheal/draft-inc-2")
    with pytest.raises(GitError, match="not selfheal's draft"):
        publish_file(repo, incident_id="inc-2", **kw)
    # ls-remote matches ref name tails: a branch whose name merely ends in ours is not ours.
    git(work, "push", "-q", "origin", "main:refs/heads/old/refs/heads/selfheal/draft-inc-4")
    fourth = publish_file(repo, incident_id="inc-4", **kw)
    assert fourth.pushed and len(branch_commits(remote, "selfheal/draft-inc-4")) == 1
    # The base already holds the file: nothing to propose.
    seed = tmp_path / "pb-seed"
    git(seed, "pull", "-q", str(remote), "selfheal/draft-inc-1")
    git(seed, "push", "-q", str(remote), "HEAD:main")
    merged = publish_file(repo, incident_id="inc-3", **kw)
    assert merged.already_merged and not merged.pushed


def test_publish_without_a_remote_makes_a_local_branch_once(tmp_path: Path) -> None:
    local = tmp_path / "local"
    git(tmp_path, "init", "-q", "-b", "main", str(local))
    (local / "README.md").write_text("x\n")
    git(local, "add", ".")
    git(local, "commit", "-q", "-m", "init")
    repo = GitRepo(local)
    kw: dict[str, Any] = {"path": "p.yaml", "content": "name: p\n", "message": "add p", "when": 1_700_000_000}
    first = publish_file(repo, incident_id="inc-1", **kw)
    assert first.pushed and first.remote == ""
    assert not publish_file(repo, incident_id="inc-1", **kw).pushed
    assert git(local, "show", "selfheal/draft-inc-1:p.yaml") == "name: p"
    assert git(local, "status", "--porcelain") == ""  # the checkout is untouched


def with_forge(setup: dict[str, Any], forge: Forge) -> DraftActivities:
    """The setup's activity with `forge` for the playbooks repository (as `gitops.forges.playbooks`)."""
    base: DraftActivities = setup["acts"]
    return DraftActivities(
        base.settings,
        tracker=base.tracker,
        store=base.store,
        open_repo=base.open_repo,
        forge=lambda repo: forge if repo == "playbooks" else None,
    )


def github_forge(fake: GithubFake, token: str) -> GithubForge:
    return GithubForge(
        ForgeSettings(kind="github", url=fake.url, project="acme/playbooks", token=SecretStr(token))
    )


def test_with_a_forge_the_draft_branch_is_proposed_as_one_pull_request(setup: dict[str, Any]) -> None:
    """The branch is pushed to the real bare remote and a pull request opened from it, with the
    incident, the ticket and why in its body and its URL on the ticket; a retried activity finds
    the request by its branch and opens no second one."""
    with GithubFake() as fake:
        fake.add_token("bot", "selfheal-bot")
        fake.add_repo("acme/playbooks", setup["remote"])
        acts = with_forge(setup, github_forge(fake, "bot"))
        view = healed_view(setup["ticket"], setup["sha"])
        first = acts.draft(view, "service")
        assert first.status == "proposed" and first.branch == "selfheal/draft-d1a2b3c4-1", first.message
        (pull,) = fake.repos["acme/playbooks"].pulls.values()
        assert pull.head == first.branch and pull.base == "main" and pull.state == "open"
        assert pull.labels == ["selfheal"]  # as a remediation request's, by default
        assert pull.title == f"playbooks: add shop-high-latency-revert, drafted from incident {view.id}"
        assert f"incident `{view.id}`" in pull.body and f"ticket {setup['ticket'].key}" in pull.body
        assert "healed by an approved proposed revert (approved by alice)" in pull.body
        assert first.pull_request == "https://github.example/acme/playbooks/pull/1"
        assert first.pull_request in first.message
        assert len(branch_commits(setup["remote"], first.branch)) == 1
        (comment,) = [c["body"] for c in setup["tracker"].get(setup["ticket"].key)["comments"]]
        assert (
            f"Proposed as pull request {first.pull_request} from branch {first.branch} into main" in comment
        )
        assert "open a pull request from it" not in comment

        again = acts.draft(view, "service")  # a retried activity
        assert again == first
        assert len(fake.repos["acme/playbooks"].pulls) == 1 and pull.labels == ["selfheal"]
        assert [r for r in fake.requests if r == ("POST", "/api/v3/repos/acme/playbooks/pulls")] == [
            ("POST", "/api/v3/repos/acme/playbooks/pulls")
        ]
        assert len(setup["tracker"].get(setup["ticket"].key)["comments"]) == 1


def test_a_forge_refusal_leaves_the_pushed_branch_and_says_why_on_the_ticket(setup: dict[str, Any]) -> None:
    """A read-only token (403, which retrying cannot cure): the branch is still proposed, the ticket
    says the pull request could not be opened and asks for one; nothing is raised."""
    with GithubFake() as fake:
        fake.add_token("reader", "viewer", write=False)
        fake.add_repo("acme/playbooks", setup["remote"])
        acts = with_forge(setup, github_forge(fake, "reader"))
        result = acts.draft(healed_view(setup["ticket"], setup["sha"]), "service")
        assert result.status == "proposed" and result.pull_request == "" and result.branch
        assert not fake.repos["acme/playbooks"].pulls
        assert len(branch_commits(setup["remote"], result.branch)) == 1
        (comment,) = [c["body"] for c in setup["tracker"].get(setup["ticket"].key)["comments"]]
        assert "Could not open a pull request on the forge of playbooks: github" in comment
        assert "403" in comment and "open a pull request from it into main" in comment


def test_a_forge_down_fails_the_attempt_and_the_retry_opens_the_request(setup: dict[str, Any]) -> None:
    """The branch is pushed but the forge cannot be reached: the attempt fails retryably before the
    ticket is told anything; the retry finds the branch pushed and opens the one request."""
    with GithubFake() as gone:
        down = github_forge(gone, "bot")
    view = healed_view(setup["ticket"], setup["sha"])
    with pytest.raises(ConnectorError) as failed:
        with_forge(setup, down).draft(view, "service")
    assert failed.value.retryable and "cannot reach" in str(failed.value)
    assert len(branch_commits(setup["remote"], "selfheal/draft-d1a2b3c4-1")) == 1
    assert setup["tracker"].get(setup["ticket"].key)["comments"] == []
    with GithubFake() as fake:
        fake.add_token("bot", "selfheal-bot")
        fake.add_repo("acme/playbooks", setup["remote"])
        result = with_forge(setup, github_forge(fake, "bot")).draft(view, "service")
        assert result.pull_request and len(fake.repos["acme/playbooks"].pulls) == 1
        assert len(branch_commits(setup["remote"], result.branch)) == 1
        (comment,) = [c["body"] for c in setup["tracker"].get(setup["ticket"].key)["comments"]]
        assert result.pull_request in comment


def gitea_forge(fake: GiteaFake) -> GiteaForge:
    return GiteaForge(
        ForgeSettings(kind="gitea", url=fake.url, project="acme/playbooks", token=SecretStr("bot"))
    )


@pytest.mark.parametrize("labels", [{"selfheal"}, set()])
def test_on_gitea_a_missing_label_leaves_the_request_proposed_and_says_so(
    setup: dict[str, Any], labels: set[str]
) -> None:
    """Gitea labels by existing name only (it ignores one the repository lacks): the request is opened
    and proposed all the same, its URL on the ticket with why it has no label; a retry opens no
    second request and comments no second time."""
    with GiteaFake() as fake:
        fake.add_token("bot", "selfheal-bot")
        repo = fake.add_repo("acme/playbooks", setup["remote"], labels=labels)
        acts = with_forge(setup, gitea_forge(fake))
        view = healed_view(setup["ticket"], setup["sha"])
        result = acts.draft(view, "service")
        (pull,) = repo.pulls.values()
        assert result.status == "proposed" and result.pull_request.endswith(f"/pulls/{pull.number}")
        assert pull.state == "open" and pull.labels == sorted(labels)
        (comment,) = [c["body"] for c in setup["tracker"].get(setup["ticket"].key)["comments"]]
        assert f"Proposed as pull request {result.pull_request} from branch {result.branch}" in comment
        unlabelled = "Could not label the pull request selfheal: gitea" in comment
        missing = "no label selfheal in acme/playbooks" in comment
        assert unlabelled == (not labels) and missing == (not labels), comment
        assert acts.draft(view, "service") == result
        assert len(repo.pulls) == 1 and len(setup["tracker"].get(setup["ticket"].key)["comments"]) == 1
