"""The forge webhooks on the API: signed or refused (401), off unless configured (403), and an
event about anything but a selfheal branch's request ignored. Deliveries are built as the forges
send them (tests/support/forges/events.py cites the sources): `not_waiting` with the incident id
shows a real-shaped event was read and routed (no remediation runs here; the e2e tests see
`woken`), `ignored` that it touched nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.support.app import Stack
from tests.support.forges import events, github_signature
from tests.support.forges.events import github_pull_event, gitlab_mr_event

SECRET = "github-secret-0123456789"
TOKEN = "gitlab-token-0123456789"
GITEA = "gitea-secret-0123456789"
BRANCH = "selfheal/0123456789ab-abc123"
INCIDENT = BRANCH.removeprefix("selfheal/")
NOT_WAITING = {"status": "not_waiting", "incident_id": INCIDENT}
IGNORED = {"status": "ignored"}

pytestmark = pytest.mark.settings(
    gitops={"github_webhook_secret": SECRET, "gitlab_webhook_token": TOKEN, "gitea_webhook_secret": GITEA}
)


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


@pytest.mark.settings(gitops={"github_webhook_secret": SECRET})
async def test_a_forge_without_a_secret_is_refused(stack: Stack) -> None:
    body = github_pull_event("closed", 1, BRANCH)
    resp = await post(stack, "/api/v1/gitops/gitea/webhook", body, {"X-Gitea-Signature": "0" * 64})
    assert resp.status_code == 403 and "gitea webhook disabled" in resp.json()["error"]


async def test_github_deliveries_as_github_sends_them(stack: Stack) -> None:
    path = "/api/v1/gitops/github/webhook"
    merged = events.github_pull_request(
        "closed", 7, BRANCH, merged=True, head_sha="a" * 40, merge_commit_sha="b" * 40
    )
    for form in (False, True):  # `form` is what GitHub's API makes when content_type is not given
        body, headers = events.github_delivery("pull_request", merged, SECRET, form=form)
        resp = await post(stack, path, body, headers)
        assert (resp.status_code, resp.json()) == (200, NOT_WAITING), (form, resp.text)
    # The ping a new webhook gets, and events nobody subscribed selfheal to: 2xx, nothing done.
    for event, payload in (
        ("ping", events.github_ping()),
        ("pull_request_review", {**merged, "action": "submitted", "review": {"state": "approved"}}),
        ("check_suite", {"action": "completed", "check_suite": {"head_branch": BRANCH}}),
    ):
        body, headers = events.github_delivery(event, payload, SECRET)
        resp = await post(stack, path, body, headers)
        assert (resp.status_code, resp.json()) == (200, IGNORED), event
    body, headers = events.github_delivery("pull_request", merged, "another-secret-000000", form=True)
    assert (await post(stack, path, body, headers)).status_code == 401


async def test_gitlab_deliveries_as_gitlab_sends_them(stack: Stack) -> None:
    path = "/api/v1/gitops/gitlab/webhook"
    merged = events.gitlab_merge_request("merge", 3, BRANCH, head_sha="a" * 40, merge_commit_sha="b" * 40)
    body, headers = events.gitlab_delivery("Merge Request Hook", merged, TOKEN)
    resp = await post(stack, path, body, headers)
    assert (resp.status_code, resp.json()) == (200, NOT_WAITING)
    # "Test → Push events" on the webhook page, and an event type selfheal does not read.
    pipeline = {"object_kind": "pipeline", "object_attributes": {"ref": BRANCH, "status": "success"}}
    for event, payload in (("Push Hook", events.gitlab_push()), ("Pipeline Hook", pipeline)):
        body, headers = events.gitlab_delivery(event, payload, TOKEN)
        resp = await post(stack, path, body, headers)
        assert (resp.status_code, resp.json()) == (200, IGNORED), event
    body, headers = events.gitlab_delivery("Merge Request Hook", merged, None)
    assert (await post(stack, path, body, headers)).status_code == 401


async def test_gitea_and_forgejo_deliveries_as_they_send_them(stack: Stack) -> None:
    path = "/api/v1/gitops/gitea/webhook"
    merged = events.gitea_pull_request("closed", 5, BRANCH, merged=True, merge_commit_sha="b" * 40)
    for form in (False, True):  # Gitea signs the JSON payload, even inside a form body
        body, headers = events.gitea_delivery("pull_request", merged, GITEA, form=form)
        resp = await post(stack, path, body, headers)
        assert (resp.status_code, resp.json()) == (200, NOT_WAITING), (form, resp.text)
    # Forgejo's own headers alone are enough.
    body, headers = events.gitea_delivery("pull_request", merged, GITEA, forgejo=True)
    forgejo = {k: v for k, v in headers.items() if not k.startswith(("X-Gitea-", "X-Gogs-"))}
    resp = await post(stack, path, body, forgejo)
    assert (resp.status_code, resp.json()) == (200, NOT_WAITING)
    # "Test Delivery" (a push), and a review event about the same pull request.
    for event, payload in (("push", events.gitea_push()), ("pull_request_approved", merged)):
        body, headers = events.gitea_delivery(event, payload, GITEA)
        resp = await post(stack, path, body, headers)
        assert (resp.status_code, resp.json()) == (200, IGNORED), event
    # Not Gitea's signature: with a `sha256=` prefix, or over the form body instead of the JSON.
    body, headers = events.gitea_delivery("pull_request", merged, GITEA, form=True)
    for bad in ("sha256=" + headers["X-Gitea-Signature"], github_signature(GITEA, body)[7:]):
        resp = await post(stack, path, body, {**headers, "X-Gitea-Signature": bad})
        assert resp.status_code == 401, bad
