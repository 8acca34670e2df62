"""Jira's outgoing webhooks, shaped as the deployment (`JiraFake(cloud=...)`) sends them.

The shapes follow Atlassian's documented payloads, kept as fixtures in `payloads/` (`payload()`
loads one); tests compare the fake's events with them key for key. Cloud: comment events carry a
trimmed issue (id, self, key and a few fields, no labels), people are accountIds (no name, key or
e-mail). Data Center: comment events carry no issue at all (only `comment.self` names it), people
have a name, a key (`JIRAUSER…`) and an e-mail.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import httpx

from tests.support.jira.adf import adf_text
from tests.support.jira.model import JsonDict, _Comment, _Issue, _ts

PAYLOADS = Path(__file__).with_name("payloads")

#: The fields a Cloud comment event's trimmed issue carries.
_CLOUD_COMMENT_ISSUE_FIELDS = (
    "statuscategorychangedate",
    "issuetype",
    "project",
    "assignee",
    "priority",
    "status",
    "summary",
)


def payload(name: str) -> JsonDict:
    """One documented webhook body from `payloads/`, e.g. `payload("dc_comment_created")`."""
    data: JsonDict = json.loads((PAYLOADS / f"{name}.json").read_text())
    return data


@dataclass
class WebhookDelivery:
    """One outgoing webhook POST as the fake sent it (the body is byte-exact)."""

    url: str
    event: JsonDict
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None
    #: The receiver's answer body (text), for tests that read what it said.
    answer: str | None = None


@dataclass
class _Webhook:
    url: str
    secret: str | None
    token_in_url: str | None
    events: frozenset[str]
    api_events: bool
    comment_also_updates: bool


class WebhooksMixin:
    """Part of `JiraFake`: Jira's outgoing webhooks for what a human does in the UI and (optionally)
    for what the REST API did, sent as Jira sends them."""

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        with self._lock:
            return list(self._deliveries)

    def configure_webhook(
        self,
        url: str,
        secret: str | None = None,
        token_in_url: str | None = None,
        *,
        events: Sequence[str] = (
            "comment_created",
            "comment_updated",
            "comment_deleted",
            "jira:issue_updated",
        ),
        api_events: bool = False,
        comment_also_updates: bool = False,
    ) -> None:
        """Register Jira's outgoing webhook.

        `secret` signs each body (`X-Hub-Signature: sha256=<hmac>`), `token_in_url` appends
        `?token=` (how a Server admin without signing passes a shared secret). Real Jira also fires
        webhooks for changes made through the REST API, i.e. by our own bot: `api_events=True` does
        that too (delivered from a background thread, see `deliveries`). Data Center also sends a
        `jira:issue_updated` (`issue_commented`) next to `comment_created` when the webhook is
        subscribed to issue updates; `comment_also_updates=True` does that (edits and deletions
        always come as both on Data Center).
        """
        with self._lock:
            self._webhook = _Webhook(
                url, secret, token_in_url, frozenset(events), api_events, comment_also_updates
            )

    def add_comment_as(self, key: str, user: str, body: str) -> int | None:
        """A human comments in the UI; returns the webhook receiver's status (None: no webhook)."""
        with self._lock:
            self._people.add(user)
            iss = self._get_issue(key)
            comment = self._add_comment(iss, user, body)
            events = self._comment_events(iss, comment, user)
        return self._send_all(events)

    def edit_comment_as(self, key: str, comment_id: int | str, user: str, body: str) -> int | None:
        """`user` edits a comment in the UI (anyone with "edit all comments" may edit anyone's)."""
        with self._lock:
            self._people.add(user)
            iss = self._get_issue(key)
            comment = self._comment_by_id(iss, comment_id)
            comment.body = body
            comment.update_author = user
            comment.updated = datetime.now(UTC)
            events = self._changed_comment_events(iss, comment, user, deleted=False)
        return self._send_all(events)

    def delete_comment_as(self, key: str, comment_id: int | str, user: str) -> int | None:
        """`user` deletes a comment in the UI."""
        with self._lock:
            self._people.add(user)
            iss = self._get_issue(key)
            comment = self._comment_by_id(iss, comment_id)
            iss.comments.remove(comment)
            events = self._changed_comment_events(iss, comment, user, deleted=True)
        return self._send_all(events)

    def user_key(self, user: str) -> str:
        """The Data Center user key the fake gives `user` (new DC users get `JIRAUSER<n>`)."""
        return f"JIRAUSER{10000 + int(hashlib.sha1(user.encode()).hexdigest()[:4], 16)}"

    def transition_as(self, key: str, user: str, status_name: str) -> int | None:
        """A human moves the issue in the UI; returns the webhook receiver's status (None: no webhook)."""
        with self._lock:
            self._people.add(user)
            iss = self._get_issue(key)
            target = self._status_by_name(status_name)
            if target is None:
                raise ValueError(f"no status {status_name!r}; workflow has {sorted(self._workflow)}")
            if target.name == iss.status:
                raise ValueError(f"{key} is already in {target.name!r}")
            event = self._do_transition(iss, target, user)
        return self._send_all([event])

    def redeliver_last(self) -> int | None:
        """Send the last delivery again, byte for byte, same `X-Atlassian-Webhook-Identifier`."""
        with self._lock:
            if not self._deliveries:
                raise RuntimeError("nothing was delivered yet")
            last = self._deliveries[-1]
        headers = dict(last.headers)
        headers["X-Atlassian-Webhook-Retry"] = str(int(headers.get("X-Atlassian-Webhook-Retry", "0")) + 1)
        return self._post_webhook(WebhookDelivery(last.url, last.event, last.body, headers))

    def _send_all(self, events: list[JsonDict]) -> int | None:
        status: int | None = None
        for i, event in enumerate(events):
            delivery = self._prepare_delivery(event)
            if delivery is None:
                continue
            result = self._post_webhook(delivery)
            if i == 0 or status is None:
                status = result
        return status

    def _prepare_delivery(self, event: JsonDict) -> WebhookDelivery | None:
        with self._lock:
            hook = self._webhook
        if hook is None or event["webhookEvent"] not in hook.events:
            return None
        event = self._cloud_extras(event)
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Atlassian Webhook HTTP Client",
            "X-Atlassian-Webhook-Identifier": str(uuid.uuid4().int)[:19],
            "X-Atlassian-Webhook-Flow": "Primary",
        }
        if hook.secret:
            digest = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature"] = f"sha256={digest}"
        url = hook.url
        if hook.token_in_url:
            parts = urlsplit(url)
            query = (parts.query + "&" if parts.query else "") + urlencode({"token": hook.token_in_url})
            url = urlunsplit(parts._replace(query=query))
        return WebhookDelivery(url, event, body, headers)

    def _post_webhook(self, delivery: WebhookDelivery) -> int:
        with self._lock:
            self._deliveries.append(delivery)
        try:
            response = httpx.post(delivery.url, content=delivery.body, headers=delivery.headers, timeout=10)
        except httpx.HTTPError as exc:
            delivery.error = repr(exc)
            raise
        delivery.status = response.status_code
        delivery.answer = response.text
        return response.status_code

    def _fire_api_events(self, events: list[JsonDict]) -> None:
        """Jira sends webhooks for REST-made changes too; asynchronously, like Jira does."""
        with self._lock:
            hook = self._webhook
        if hook is None or not hook.api_events:
            return

        def run() -> None:
            with contextlib.suppress(httpx.HTTPError):
                self._send_all(events)

        threading.Thread(target=run, name="jira-fake-webhook", daemon=True).start()

    def _comment_events(self, iss: _Issue, comment: _Comment, user: str) -> list[JsonDict]:
        now_ms = int(time.time() * 1000)
        created: JsonDict = {
            "timestamp": now_ms,
            "webhookEvent": "comment_created",
            "comment": self._webhook_comment(iss, comment),
        }
        events = [self._with_issue(created, iss)]
        hook = self._webhook
        if hook is not None and hook.comment_also_updates:
            events.append(self._issue_comment_event(iss, comment, user, "issue_commented", now_ms))
        return events

    def _changed_comment_events(
        self, iss: _Issue, comment: _Comment, user: str, *, deleted: bool
    ) -> list[JsonDict]:
        """Cloud: `comment_updated`/`comment_deleted`. Data Center: those, and a
        `jira:issue_updated` (`issue_comment_edited`/`issue_comment_deleted`) whose `user` is the editor."""
        now_ms = int(time.time() * 1000)
        event: JsonDict = {
            "timestamp": now_ms,
            "webhookEvent": "comment_deleted" if deleted else "comment_updated",
            "comment": self._webhook_comment(iss, comment),
        }
        events = [self._with_issue(event, iss)]
        if not self.cloud:
            type_name = "issue_comment_deleted" if deleted else "issue_comment_edited"
            events.append(self._issue_comment_event(iss, comment, user, type_name, now_ms))
        return events

    def _issue_comment_event(
        self, iss: _Issue, comment: _Comment, user: str, type_name: str, now_ms: int
    ) -> JsonDict:
        event: JsonDict = {
            "timestamp": now_ms,
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": type_name,
            "user": self._webhook_user(user),
            "issue": self._webhook_issue(iss),
            "comment": self._webhook_comment(iss, comment),
        }
        return event

    def _with_issue(self, event: JsonDict, iss: _Issue) -> JsonDict:
        """Cloud puts a trimmed issue in comment events; Data Center puts none."""
        if self.cloud:
            full = self._webhook_issue(iss)
            fields = full["fields"]
            event["issue"] = {
                "id": full["id"],
                # Cloud's comment events really say `/rest/api/2/<id>`, without `issue/`.
                "self": f"{self._base()}/rest/api/2/{iss.id}",
                "key": full["key"],
                "fields": {f: fields.get(f) for f in _CLOUD_COMMENT_ISSUE_FIELDS},
            }
        return event

    def _cloud_extras(self, event: JsonDict) -> JsonDict:
        """Cloud adds which webhooks matched and the event's role; Data Center adds neither."""
        if self.cloud:
            return {**event, "eventType": "primaryAction", "matchedWebhookIds": [1]}
        return event

    def _webhook_comment(self, iss: _Issue, c: _Comment) -> JsonDict:
        author = self._webhook_user(c.author)
        comment: JsonDict = {
            "self": f"{self._base()}/rest/api/2/issue/{iss.id}/comment/{c.id}",
            "id": str(c.id),
            "author": author,
            "body": adf_text(c.body),  # webhooks speak REST v2: wiki text even for an ADF comment
            "updateAuthor": self._webhook_user(c.update_author) if c.update_author else author,
            "created": _ts(c.created),
            "updated": _ts(c.updated),
        }
        if self.cloud:
            comment["jsdPublic"] = True
        return comment

    def _webhook_issue(self, iss: _Issue) -> JsonDict:
        """The whole issue as `jira:issue_*` events carry it, people shaped per deployment."""
        issue = self._issue_json(iss, self._webhook_fields)
        issue.pop("expand", None)  # a REST answer's; webhook issues have none
        fields = issue["fields"]
        for name in ("assignee", "reporter"):
            if name in fields:
                who = iss.assignee if name == "assignee" else iss.reporter
                fields[name] = self._webhook_user(who) if who else None
        return issue

    def _webhook_user(self, user: str) -> JsonDict:
        """Cloud: accountId only (no name, key or e-mail). Data Center: name, key and e-mail."""
        base = self._base()
        if self.cloud:
            account = self.account_id(user)
            return {
                "self": f"{base}/rest/api/2/user?accountId={account}",
                "accountId": account,
                "avatarUrls": _avatars(base, account),
                "displayName": _display(user),
                "active": True,
                "timeZone": "Etc/GMT",
                "accountType": "atlassian",
            }
        key = self.user_key(user)
        return {
            "self": f"{base}/rest/api/2/user?username={quote(user)}",
            "name": user,
            "key": key,
            "emailAddress": f"{user}@example.com",
            "avatarUrls": _avatars(base, key),
            "displayName": _display(user),
            "active": True,
            "timeZone": "Europe/Berlin",
        }

    @staticmethod
    def _comment_by_id(iss: _Issue, comment_id: int | str) -> _Comment:
        found = next((c for c in iss.comments if str(c.id) == str(comment_id)), None)
        if found is None:
            raise ValueError(f"{iss.key} has no comment {comment_id}")
        return found

    @staticmethod
    def _webhook_fields(name: str) -> bool:
        return name not in ("comment", "attachment")


def _avatars(base: str, owner: str) -> dict[str, Any]:
    return {
        size: f"{base}/secure/useravatar?size={size}&ownerId={owner}"
        for size in ("48x48", "24x24", "16x16", "32x32")
    }


def _display(user: str) -> str:
    return user.replace(".", " ").replace("_", " ").title()


class WebhookReceiver:
    """A stand-in for selfheal's webhook endpoint: records each POST the fake sends and answers
    200, so a test can read the exact bodies Jira would deliver."""

    def __init__(self) -> None:
        received: list[tuple[str, dict[str, str], bytes]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v1/jira/webhook"

    @property
    def events(self) -> list[JsonDict]:
        return [json.loads(body) for _, _, body in self.received]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
