"""Gitea and Forgejo pull requests over their REST API (`/api/v1`, token auth), with httpx.

`merge: auto` is `POST …/pulls/{n}/merge` with `merge_when_checks_succeed` and `head_commit_id`:
Gitea schedules the merge for when checks pass, or merges at once when nothing is pending. A
scheduled merge does not keep `head_commit_id` (Gitea's `ScheduleAutoMerge` takes no head), so
the wait cancels it when the head moves. Labels are given by name and must exist in the
repository (or its organization): Gitea silently drops unknown names and answers 200
(routers/api/v1/repo/issue_label.go), so selfheal compares what it got and says which are missing.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.gitops.forge import Forge, ForgeError, ForgeRequest, Status, http_error, prefer
from connectors.gitops.settings import ForgeSettings, secret

#: Pages of 50 looked through to find a branch's pull requests (newest first).
MAX_PAGES = 4


def _login(value: Any) -> str | None:
    return str(value.get("login")) if isinstance(value, dict) and value.get("login") else None


class GiteaForge(Forge):
    kind = "gitea"

    def __init__(self, settings: ForgeSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self._base = f"/api/v1/repos/{settings.project}"
        self._http = httpx.Client(
            base_url=settings.url,
            headers={
                "Authorization": f"token {secret(settings.token, 'gitops.forges.<repo>.token')}",
                "Accept": "application/json",
            },
            timeout=settings.request_timeout_seconds,
            transport=transport,
        )

    def _send(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, self._base + path, **kwargs)
        except httpx.HTTPError as exc:
            raise ForgeError(
                f"gitea {what}: cannot reach {self.settings.url}: {exc}", retryable=True
            ) from exc
        if resp.status_code >= 400:
            try:
                message = str(resp.json().get("message") or resp.reason_phrase)
            except (ValueError, AttributeError):
                message = resp.reason_phrase
            raise http_error(f"gitea {what}", resp.status_code, message)
        return resp.json() if resp.content else None

    @staticmethod
    def _state(pr: dict[str, Any]) -> ForgeRequest:
        merged = bool(pr.get("merged"))
        status: Status = "merged" if merged else ("open" if pr.get("state") == "open" else "closed")
        head, base = pr.get("head") or {}, pr.get("base") or {}
        return ForgeRequest(
            number=int(pr["number"]),
            url=str(pr.get("html_url") or ""),
            branch=str(head.get("ref") or ""),
            base=str(base.get("ref") or ""),
            status=status,
            head_sha=str(head.get("sha") or ""),
            merge_commit=str(pr["merge_commit_sha"]) if merged and pr.get("merge_commit_sha") else None,
            merged_by=_login(pr.get("merged_by")),
            auto_merge=False,
            mergeable=bool(pr.get("mergeable")),
        )

    def find(self, branch: str) -> ForgeRequest | None:
        found: list[ForgeRequest] = []
        for page in range(1, MAX_PAGES + 1):
            batch = self._send(
                f"find pull request from {branch}",
                "GET",
                "/pulls",
                params={"state": "all", "sort": "newest", "page": page, "limit": 50},
            )
            found += [self._state(p) for p in batch or [] if (p.get("head") or {}).get("ref") == branch]
            if not batch or len(batch) < 50:
                break
        return prefer(found)

    def create(self, branch: str, base: str, title: str, body: str, labels: list[str]) -> ForgeRequest:
        pr = self._send(
            f"open pull request from {branch}",
            "POST",
            "/pulls",
            json={"head": branch, "base": base, "title": title, "body": body},
        )
        state = self._state(pr)
        if labels:
            self.add_labels(state.number, labels)
        return state

    def get(self, number: int) -> ForgeRequest:
        return self._state(self._send(f"read pull request #{number}", "GET", f"/pulls/{number}"))

    def add_labels(self, number: int, labels: list[str]) -> None:
        got = self._send(f"label #{number}", "POST", f"/issues/{number}/labels", json={"labels": labels})
        have = {str(x.get("name")) for x in got or [] if isinstance(x, dict)}
        missing = [x for x in labels if x not in have]
        if missing:
            raise ForgeError(
                f"gitea label #{number}: no label {', '.join(missing)} in {self.settings.project}"
                " (Gitea ignores unknown label names: create them in the repository first)",
                retryable=False,
            )

    def auto_merge(self, number: int, head: str) -> str:
        state = self.get(number)
        if state.status != "open":
            return "not open: nothing to merge"
        if state.head_sha != head:
            return f"head moved to {state.head_sha[:12]}: not merging"
        try:
            self._send(
                f"merge #{number}",
                "POST",
                f"/pulls/{number}/merge",
                json={
                    "Do": self.settings.merge_method,
                    "head_commit_id": head,
                    "merge_when_checks_succeed": True,
                },
            )
        except ForgeError as err:
            if err.status == 409 and "already scheduled" in str(err).lower():
                return "merge already scheduled for when checks succeed"
            raise
        after = self.get(number)
        return "merged" if after.status == "merged" else "merge scheduled for when checks succeed"

    def cancel_auto_merge(self, number: int) -> None:
        try:
            self._send(f"cancel auto-merge of #{number}", "DELETE", f"/pulls/{number}/merge")
        except ForgeError as err:
            if err.status != 404:  # nothing was scheduled
                raise

    def comment(self, number: int, body: str) -> None:
        self._send(f"comment on #{number}", "POST", f"/issues/{number}/comments", json={"body": body})

    def comments(self, number: int) -> list[tuple[str, str]]:
        found = self._send(f"read comments of #{number}", "GET", f"/issues/{number}/comments") or []
        return [(_login(c.get("user")) or "", str(c.get("body") or "")) for c in found[-100:]]

    def close(self, number: int) -> None:
        if self.get(number).status == "open":
            self._send(f"close #{number}", "PATCH", f"/pulls/{number}", json={"state": "closed"})
