"""Forge webhook reading: signatures in constant time, and only a selfheal branch's request event
gets through."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from connectors.gitops import webhooks
from models.gitops import incident_of_branch
from tests.support.forges import events, github_signature
from tests.support.forges.events import github_pull_event, gitlab_mr_event

SECRET = "s" * 20
BRANCH = "selfheal/0123456789ab-abc123"


def test_github_signature() -> None:
    body = b'{"action":"closed"}'
    good = github_signature(SECRET, body)
    assert webhooks.github_signature_ok(SECRET, body, good)
    assert webhooks.github_signature_ok(SECRET, body, good.upper().replace("SHA256=", "sha256="))
    assert not webhooks.github_signature_ok(SECRET, body + b" ", good)
    assert not webhooks.github_signature_ok("other-secret-0000000", body, good)
    assert not webhooks.github_signature_ok(SECRET, body, good.removeprefix("sha256="))  # no prefix
    assert not webhooks.github_signature_ok(SECRET, body, None)
    assert not webhooks.github_signature_ok(SECRET, body, "sha1=" + "0" * 40)


def test_gitea_signature_and_gitlab_token() -> None:
    body = b"{}"
    hexdigest = github_signature(SECRET, body).removeprefix("sha256=")
    assert webhooks.gitea_signature_ok(SECRET, body, hexdigest)
    assert not webhooks.gitea_signature_ok(SECRET, body, "0" * 64)
    assert not webhooks.gitea_signature_ok(SECRET, body, None)
    assert webhooks.gitlab_token_ok(SECRET, SECRET)
    assert not webhooks.gitlab_token_ok(SECRET, SECRET + "x")
    assert not webhooks.gitlab_token_ok(SECRET, None)


def test_github_events() -> None:
    merged = json.loads(github_pull_event("closed", 7, "selfheal/0123456789ab-abc123", merged=True))
    assert webhooks.github_event("pull_request", merged) == webhooks.PullEvent(
        "selfheal/0123456789ab-abc123", 7, "merged"
    )
    closed = json.loads(github_pull_event("closed", 7, "b"))
    assert webhooks.github_event("pull_request", closed) == webhooks.PullEvent("b", 7, "closed")
    assert webhooks.github_event("push", merged) is None
    assert webhooks.github_event("pull_request", {"action": "opened"}) is None
    broken = {"action": "opened", "pull_request": {"number": "7", "head": {"ref": "b"}}}
    assert webhooks.github_event("pull_request", broken) is None
    assert webhooks.github_event("pull_request", {"pull_request": {"number": 1, "head": "x"}}) is None


def test_gitlab_events() -> None:
    body = json.loads(gitlab_mr_event("merge", 3, "selfheal/0123456789ab-abc123"))
    assert webhooks.gitlab_event("Merge Request Hook", body) == webhooks.PullEvent(
        "selfheal/0123456789ab-abc123", 3, "merge"
    )
    assert webhooks.gitlab_event("Push Hook", {"object_kind": "push"}) is None
    assert webhooks.gitlab_event("Merge Request Hook", {"object_kind": "merge_request"}) is None


def test_only_selfheal_branches_name_an_incident() -> None:
    assert incident_of_branch("selfheal/0123456789ab-abc123") == ("0123456789ab-abc123", False)
    assert incident_of_branch("selfheal/0123456789ab-abc123-revert") == ("0123456789ab-abc123", True)
    for other in ("main", "selfheal/x", "feature/0123456789ab-abc123", "selfheal/0123456789ab-abc123/x"):
        assert incident_of_branch(other) is None


def test_a_form_delivery_carries_its_json_in_payload() -> None:
    raw = b'{"action":"closed"}'
    form = urlencode({"payload": raw.decode()}).encode()
    assert webhooks.json_body("application/json", raw) == raw
    assert webhooks.json_body(None, raw) == raw
    assert webhooks.json_body("application/x-www-form-urlencoded; charset=utf-8", form) == raw
    assert webhooks.json_body("application/x-www-form-urlencoded", b"other=1") == b""
    assert webhooks.json_body("application/x-www-form-urlencoded", b"\xff") == b""


def test_real_shaped_events_are_read() -> None:
    """The full documented bodies (tests/support/forges/events.py), not only the fields read."""
    gh = events.github_pull_request("synchronize", 4, BRANCH, head_sha="a" * 40)
    assert webhooks.github_event("pull_request", gh) == webhooks.PullEvent(BRANCH, 4, "synchronize")
    gt = events.gitea_pull_request("closed", 5, BRANCH, merged=True, merge_commit_sha="b" * 40)
    assert webhooks.github_event("pull_request", gt) == webhooks.PullEvent(BRANCH, 5, "merged")
    assert webhooks.github_event("ping", events.github_ping()) is None
    assert webhooks.github_event("push", events.gitea_push()) is None
    gl = events.gitlab_merge_request("merge", 6, BRANCH, merge_commit_sha="b" * 40)
    assert webhooks.gitlab_event("Merge Request Hook", gl) == webhooks.PullEvent(BRANCH, 6, "merge")
    assert webhooks.gitlab_event("Push Hook", events.gitlab_push()) is None
