"""The forge webhooks on the API: signed or refused (401), off unless configured (403), and an
event about anything but a selfheal branch's request ignored."""

from __future__ import annotations

import httpx
import pytest

from tests.support.app import Stack
from tests.support.forges import github_signature
from tests.support.forges.repos import github_pull_event, gitlab_mr_event

SECRET = "github-secret-0123456789"
TOKEN = "gitlab-token-0123456789"
BRANCH = "selfheal/0123456789ab-abc123"

pytestmark = pytest.mark.settings(gitops={"github_webhook_secret": SECRET, "gitlab_webhook_token": TOKEN})


async def post(stack: Stack, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.api.url) as raw:  # no API token: the forge's own auth
        return await raw.post(path, content=body, headers={"Content-Type": "application/json", **headers})


async def github(
    stack: Stack, body: bytes, signature: str | None, event: str = "pull_request"
) -> httpx.Response:
    headers = {"X-GitHub-Event": event}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return await post(stack, "/api/v1/gitops/github/webhook", body, headers)


async def test_github_bad_or_missing_signature_is_401(stack: Stack) -> None:
    body = github_pull_event("closed", 1, BRANCH, merged=True)
    assert (await github(stack, body, None)).status_code == 401
    assert (await github(stack, body, github_signature("another-secret-00000", body))).status_code == 401
    tampered = body.replace(b"closed", b"opened")
    resp = await github(stack, tampered, github_signature(SECRET, body))
    assert resp.status_code == 401 and resp.json() == {"error": "bad or missing github webhook signature"}


async def test_github_signed_events(stack: Stack) -> None:
    body = github_pull_event("closed", 1, BRANCH, merged=True)
    resp = await github(stack, body, github_signature(SECRET, body))
    # No such incident, so nothing waits on it (polling would have found the merge anyway).
    assert resp.status_code == 200 and resp.json() == {"status": "not_waiting", "incident_id": BRANCH[9:]}
    other = github_pull_event("closed", 2, "feature/login", merged=True)
    assert (await github(stack, other, github_signature(SECRET, other))).json() == {"status": "ignored"}
    ping = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
    assert (await github(stack, ping, github_signature(SECRET, ping), event="ping")).json() == {
        "status": "ignored"
    }
    junk = b"not json"
    assert (await github(stack, junk, github_signature(SECRET, junk))).status_code == 422


async def test_gitlab_token(stack: Stack) -> None:
    body = gitlab_mr_event("merge", 1, BRANCH)
    path = "/api/v1/gitops/gitlab/webhook"
    assert (await post(stack, path, body, {"X-Gitlab-Token": "wrong"})).status_code == 401
    assert (await post(stack, path, body, {})).status_code == 401
    ok = await post(stack, path, body, {"X-Gitlab-Token": TOKEN, "X-Gitlab-Event": "Merge Request Hook"})
    assert ok.status_code == 200 and ok.json()["status"] == "not_waiting"


async def test_a_forge_without_a_secret_is_refused(stack: Stack) -> None:
    body = github_pull_event("closed", 1, BRANCH)
    resp = await post(stack, "/api/v1/gitops/gitea/webhook", body, {"X-Gitea-Signature": "0" * 64})
    assert resp.status_code == 403 and "gitea webhook disabled" in resp.json()["error"]
