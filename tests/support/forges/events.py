"""Forge webhook deliveries as the forges send them: the documented headers and bodies, so the
receiver is tested against what arrives, not against the few fields it reads.

Sources:
- GitHub: https://docs.github.com/en/webhooks/webhook-events-and-payloads#pull_request (and
  `#ping`), the delivery headers https://docs.github.com/en/webhooks/webhook-events-and-payloads
  #delivery-headers, signing https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-
  deliveries (`sha256=` + hex HMAC of the body as sent; a `form` webhook sends `payload=<json>`).
- GitLab: https://docs.gitlab.com/user/project/integrations/webhook_events/#merge-request-events
  and the delivery headers https://docs.gitlab.com/user/project/integrations/webhooks/ (the
  secret token as is in `X-Gitlab-Token`; a merge is `object_attributes.action: merge`).
- Gitea/Forgejo: go-gitea/gitea modules/structs/hook.go (`PullRequestPayload`, `PushPayload`),
  modules/structs/pull.go (`PullRequest`), services/webhook/deliver.go (headers; the hex HMAC of
  the JSON payload, no prefix, whatever the content type); a merge is `action: closed` with
  `pull_request.merged: true`; `X-Gitea-Event: pull_request`. Forgejo adds `X-Forgejo-*`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any
from urllib.parse import urlencode

from tests.support.forges.repos import github_signature

ZERO = "0" * 40


def _hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- GitHub -------------------------------------------------------------------------------------


def _gh_user(login: str) -> dict[str, Any]:
    return {
        "login": login,
        "id": 1000 + len(login),
        "node_id": "MDQ6VXNlcjE=",
        "html_url": f"https://github.com/{login}",
        "type": "User",
        "site_admin": False,
    }


def _gh_repo(full_name: str) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": 123456,
        "node_id": "R_kgDOABCDEF",
        "name": name,
        "full_name": full_name,
        "private": True,
        "owner": _gh_user(owner),
        "html_url": f"https://github.com/{full_name}",
        "url": f"https://api.github.com/repos/{full_name}",
        "default_branch": "main",
        "allow_auto_merge": True,
    }


def github_pull_request(
    action: str,
    number: int,
    branch: str,
    *,
    merged: bool = False,
    head_sha: str = ZERO,
    merge_commit_sha: str | None = None,
    repo: str = "acme/config",
    sender: str = "alice",
) -> dict[str, Any]:
    """A `pull_request` event body (`action`: opened, synchronize, closed, reopened, edited,
    labeled, auto_merge_enabled, …; a merge is `closed` with `pull_request.merged: true`)."""
    closed = action == "closed"
    when = "2024-05-01T12:00:00Z"
    owner = repo.split("/")[0]
    pr = {
        "url": f"https://api.github.com/repos/{repo}/pulls/{number}",
        "id": 900000 + number,
        "node_id": f"PR_kwDOABCDEF{number:04d}",
        "html_url": f"https://github.com/{repo}/pull/{number}",
        "diff_url": f"https://github.com/{repo}/pull/{number}.diff",
        "issue_url": f"https://api.github.com/repos/{repo}/issues/{number}",
        "number": number,
        "state": "closed" if closed else "open",
        "locked": False,
        "title": "selfheal: raise the pool",
        "user": _gh_user("selfheal-bot"),
        "body": "Opened by selfheal.",
        "created_at": "2024-05-01T10:00:00Z",
        "updated_at": when,
        "closed_at": when if closed else None,
        "merged_at": when if merged else None,
        # GitHub fills it with a test merge commit while open; the real one once merged.
        "merge_commit_sha": merge_commit_sha,
        "assignee": None,
        "assignees": [],
        "requested_reviewers": [],
        "labels": [{"id": 1, "name": "selfheal", "color": "ededed", "default": False}],
        "milestone": None,
        "draft": False,
        "head": {
            "label": f"{owner}:{branch}",
            "ref": branch,
            "sha": head_sha,
            "user": _gh_user(owner),
            "repo": _gh_repo(repo),
        },
        "base": {
            "label": f"{owner}:main",
            "ref": "main",
            "sha": "1" * 40,
            "user": _gh_user(owner),
            "repo": _gh_repo(repo),
        },
        "author_association": "NONE",
        "auto_merge": None,
        "active_lock_reason": None,
        "merged": merged,
        "mergeable": None,
        "rebaseable": None,
        "mergeable_state": "unknown",
        "merged_by": _gh_user(sender) if merged else None,
        "comments": 0,
        "review_comments": 0,
        "maintainer_can_modify": False,
        "commits": 1,
        "additions": 1,
        "deletions": 1,
        "changed_files": 1,
    }
    body: dict[str, Any] = {
        "action": action,
        "number": number,
        "pull_request": pr,
        "repository": _gh_repo(repo),
        "sender": _gh_user(sender),
    }
    if action == "synchronize":
        body["before"], body["after"] = ZERO, head_sha
    return body


def github_ping(hook_id: int = 4242, repo: str = "acme/config") -> dict[str, Any]:
    """The `ping` event GitHub sends when a webhook is created (or on "Redeliver" of it)."""
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": hook_id,
        "hook": {
            "type": "Repository",
            "id": hook_id,
            "name": "web",
            "active": True,
            "events": ["pull_request"],
            "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://selfheal.example"},
        },
        "repository": _gh_repo(repo),
        "sender": _gh_user("alice"),
    }


def github_delivery(
    event: str, body: dict[str, Any], secret: str, *, form: bool = False
) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) of a delivery; `form`: the `application/x-www-form-urlencoded` kind."""
    data = json.dumps(body).encode()
    ctype = "application/json"
    if form:
        data, ctype = urlencode({"payload": data.decode()}).encode(), "application/x-www-form-urlencoded"
    return data, {
        "Content-Type": ctype,
        "User-Agent": "GitHub-Hookshot/7a4b2f1",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "4242",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": "123456",
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), data, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": github_signature(secret, data),
    }


def github_pull_event(action: str, number: int, branch: str, **kw: Any) -> bytes:
    """A `pull_request` event body as bytes (what the receiver's signature covers)."""
    return json.dumps(github_pull_request(action, number, branch, **kw)).encode()


# --- GitLab -------------------------------------------------------------------------------------


def gitlab_merge_request(
    action: str,
    iid: int,
    branch: str,
    *,
    head_sha: str = ZERO,
    merge_commit_sha: str | None = None,
    project: str = "acme/config",
    user: str = "alice",
) -> dict[str, Any]:
    """A Merge request event body (`object_attributes.action`: open, close, reopen, update,
    approved, unapproved, approval, unapproval, merge)."""
    state = {"merge": "merged", "close": "closed"}.get(action, "opened")
    url = f"https://gitlab.example.com/{project}"
    proj = {
        "id": 42,
        "name": project.rsplit("/", 1)[-1],
        "description": "",
        "web_url": url,
        "avatar_url": None,
        "git_ssh_url": f"git@gitlab.example.com:{project}.git",
        "git_http_url": f"{url}.git",
        "namespace": project.split("/")[0],
        "visibility_level": 0,
        "path_with_namespace": project,
        "default_branch": "main",
        "ci_config_path": None,
        "homepage": url,
        "url": f"git@gitlab.example.com:{project}.git",
        "ssh_url": f"git@gitlab.example.com:{project}.git",
        "http_url": f"{url}.git",
    }
    person = {
        "id": 7,
        "name": user.title(),
        "username": user,
        "avatar_url": "",
        "email": "[REDACTED]",
    }
    attrs = {
        "id": 1000 + iid,
        "iid": iid,
        "target_branch": "main",
        "source_branch": branch,
        "source_project_id": 42,
        "author_id": 3,
        "assignee_ids": [],
        "assignee_id": None,
        "reviewer_ids": [],
        "title": "selfheal: raise the pool",
        "created_at": "2024-05-01 10:00:00 UTC",
        "updated_at": "2024-05-01 12:00:00 UTC",
        "milestone_id": None,
        "state_id": {"opened": 1, "closed": 2, "merged": 3}[state],
        "state": state,
        "blocking_discussions_resolved": True,
        "work_in_progress": False,
        "draft": False,
        "first_contribution": False,
        "merge_status": "can_be_merged",
        "detailed_merge_status": "not_open" if state != "opened" else "mergeable",
        "target_project_id": 42,
        "description": "Opened by selfheal.",
        "merge_commit_sha": merge_commit_sha,
        "merge_when_pipeline_succeeds": False,
        "head_pipeline_id": None,
        "url": f"{url}/-/merge_requests/{iid}",
        "source": proj,
        "target": proj,
        "last_commit": {
            "id": head_sha,
            "message": "selfheal: raise the pool\n",
            "title": "selfheal: raise the pool",
            "timestamp": "2024-05-01T10:00:00+00:00",
            "url": f"{url}/-/commit/{head_sha}",
            "author": {"name": "selfheal", "email": "selfheal@example.com"},
        },
        "labels": [],
        "action": action,
    }
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": person,
        "project": proj,
        "object_attributes": attrs,
        "labels": [],
        "changes": {"state_id": {"previous": 1, "current": attrs["state_id"]}} if state != "opened" else {},
        "repository": {"name": proj["name"], "url": proj["url"], "description": "", "homepage": url},
        "assignees": [],
        "reviewers": [],
    }


def gitlab_push(project: str = "acme/config") -> dict[str, Any]:
    """A Push Hook body, as the webhook page's "Test → Push events" sends it."""
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": ZERO,
        "after": "2" * 40,
        "ref": "refs/heads/main",
        "checkout_sha": "2" * 40,
        "user_username": "alice",
        "project_id": 42,
        "project": {"id": 42, "path_with_namespace": project, "default_branch": "main"},
        "commits": [],
        "total_commits_count": 0,
        "repository": {"name": project.rsplit("/", 1)[-1]},
    }


def gitlab_delivery(event: str, body: dict[str, Any], token: str | None) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers): `event` is the `X-Gitlab-Event` value, e.g. `Merge Request Hook`."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/17.5.0",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": str(uuid.uuid4()),
        "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        "X-Gitlab-Instance": "https://gitlab.example.com",
        "Idempotency-Key": str(uuid.uuid4()),
    }
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return json.dumps(body).encode(), headers


def gitlab_mr_event(action: str, iid: int, branch: str, **kw: Any) -> bytes:
    return json.dumps(gitlab_merge_request(action, iid, branch, **kw)).encode()


# --- Gitea / Forgejo ----------------------------------------------------------------------------


def _gt_user(login: str) -> dict[str, Any]:
    return {"id": 2, "login": login, "login_name": "", "full_name": "", "email": f"{login}@noreply.example"}


def _gt_repo(full_name: str) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": 1,
        "owner": _gt_user(owner),
        "name": name,
        "full_name": full_name,
        "private": True,
        "html_url": f"https://gitea.example.com/{full_name}",
        "default_branch": "main",
    }


def gitea_pull_request(
    action: str,
    number: int,
    branch: str,
    *,
    merged: bool = False,
    head_sha: str = ZERO,
    merge_commit_sha: str | None = None,
    repo: str = "acme/config",
    sender: str = "alice",
) -> dict[str, Any]:
    """A `pull_request` event body (`action`: opened, closed, reopened, edited, synchronized,
    label_updated, …; a merge is `closed` with `pull_request.merged: true`)."""
    closed = action == "closed"
    when = "2024-05-01T12:00:00Z"
    pr = {
        "id": 100 + number,
        "url": f"https://gitea.example.com/{repo}/pulls/{number}",
        "number": number,
        "user": _gt_user("selfheal-bot"),
        "title": "selfheal: raise the pool",
        "body": "Opened by selfheal.",
        "labels": [],
        "milestone": None,
        "assignee": None,
        "assignees": None,
        "requested_reviewers": None,
        "state": "closed" if closed else "open",
        "draft": False,
        "is_locked": False,
        "comments": 0,
        "html_url": f"https://gitea.example.com/{repo}/pulls/{number}",
        "diff_url": f"https://gitea.example.com/{repo}/pulls/{number}.diff",
        "patch_url": f"https://gitea.example.com/{repo}/pulls/{number}.patch",
        "mergeable": not closed,
        "merged": merged,
        "merged_at": when if merged else None,
        "merge_commit_sha": merge_commit_sha,
        "merged_by": _gt_user(sender) if merged else None,
        "allow_maintainer_edit": False,
        "base": {"label": "main", "ref": "main", "sha": "1" * 40, "repo_id": 1, "repo": _gt_repo(repo)},
        "head": {"label": branch, "ref": branch, "sha": head_sha, "repo_id": 1, "repo": _gt_repo(repo)},
        "merge_base": "1" * 40,
        "due_date": None,
        "created_at": "2024-05-01T10:00:00Z",
        "updated_at": when,
        "closed_at": when if closed else None,
        "pin_order": 0,
    }
    return {
        "action": action,
        "number": number,
        "pull_request": pr,
        "requested_reviewer": None,
        "repository": _gt_repo(repo),
        "sender": _gt_user(sender),
        "commit_id": "",
        "review": None,
    }


def gitea_push(repo: str = "acme/config") -> dict[str, Any]:
    """A push event body, as the webhook page's "Test Delivery" sends it."""
    return {
        "ref": "refs/heads/main",
        "before": "2" * 40,
        "after": "2" * 40,
        "compare_url": "",
        "commits": [],
        "total_commits": 0,
        "head_commit": None,
        "repository": _gt_repo(repo),
        "pusher": _gt_user("alice"),
        "sender": _gt_user("alice"),
    }


def gitea_delivery(
    event: str,
    body: dict[str, Any],
    secret: str,
    *,
    event_type: str | None = None,
    forgejo: bool = False,
    form: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) as Gitea's deliver.go sends them (Forgejo's adds `X-Forgejo-*`). The
    signature is over the JSON payload even for a form delivery."""
    payload = json.dumps(body).encode()
    data, ctype = payload, "application/json"
    if form:
        data, ctype = urlencode({"payload": payload.decode()}).encode(), "application/x-www-form-urlencoded"
    sig = _hex(secret, payload)
    delivery = str(uuid.uuid4())
    kind = event_type or event
    headers = {
        "Content-Type": ctype,
        "X-Gitea-Delivery": delivery,
        "X-Gitea-Event": event,
        "X-Gitea-Event-Type": kind,
        "X-Gitea-Signature": sig,
        "X-Gogs-Delivery": delivery,
        "X-Gogs-Event": event,
        "X-Gogs-Event-Type": kind,
        "X-Gogs-Signature": sig,
        "X-Hub-Signature": "sha1=" + hmac.new(secret.encode(), payload, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": "sha256=" + sig,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
        "X-GitHub-Event-Type": kind,
    }
    if forgejo:
        headers.update(
            {
                "X-Forgejo-Delivery": delivery,
                "X-Forgejo-Event": event,
                "X-Forgejo-Event-Type": kind,
                "X-Forgejo-Signature": sig,
            }
        )
    return data, headers
