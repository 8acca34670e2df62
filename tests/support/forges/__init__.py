"""Test servers over real HTTP for the forges (GitHub, GitLab, Gitea/Forgejo) and Argo CD selfheal
talks to, each storing branches in a real bare git remote, answering and refusing as the real ones
do (each module cites its sources); the repository layout the GitOps tests share; and the forges'
webhook deliveries (`events`)."""

from tests.support.forges import events
from tests.support.forges.argocd import ArgoCdFake
from tests.support.forges.gitea import GiteaFake
from tests.support.forges.github import GithubFake
from tests.support.forges.gitlab import GitlabFake
from tests.support.forges.remote import GitRemote
from tests.support.forges.repos import CONFIG, ConfigRepo, github_signature, make_config_repo

__all__ = [
    "CONFIG",
    "ArgoCdFake",
    "ConfigRepo",
    "GitRemote",
    "GiteaFake",
    "GithubFake",
    "GitlabFake",
    "events",
    "github_signature",
    "make_config_repo",
]
