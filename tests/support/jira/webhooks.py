"""Jira's outgoing webhooks."""

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
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from tests.support.jira.model import JsonDict, _Comment, _Issue


@dataclass
class WebhookDelivery:
    """One outgoing webhook POST as the fake sent it (the body is byte-exact)."""

    url: str
    event: JsonDict
    body: bytes
    headers: dict[str, str]
    status: int | None = None
    error: str | None = None


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
        events: Sequence[str] = ("comment_created", "jira:issue_updated"),
        api_events: bool = False,
        comment_also_updates: bool = False,
    ) -> None:
        """Register Jira's outgoing webhook.

        `secret` signs each body (`X-Hub-Signature: sha256=<hmac>`), `token_in_url` appends
        `?token=` (how a Server admin without signing passes a shared secret). Real Jira also fires
        webhooks for changes made through the REST API, i.e. by our own bot: `api_events=True` does
        that too (delivered from a background thread, see `deliveries`). Real Jira also sends a
        `jira:issue_updated` (`issue_commented`) next to `comment_created`; `comment_also_updates=True`
        does that.
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
        issue = self._issue_json(iss, self._webhook_fields)
        events: list[JsonDict] = [
            {
                "timestamp": now_ms,
                "webhookEvent": "comment_created",
                "comment": self._comment_json(iss, comment),
                "issue": issue,
                "eventType": "primaryAction",
                "matchedWebhookIds": [1],
            }
        ]
        hook = self._webhook
        if hook is not None and hook.comment_also_updates:
            events.append(
                {
                    "timestamp": now_ms,
                    "webhookEvent": "jira:issue_updated",
                    "issue_event_type_name": "issue_commented",
                    "user": self._user_json(user),
                    "issue": issue,
                    "comment": self._comment_json(iss, comment),
                    "matchedWebhookIds": [1],
                }
            )
        return events

    @staticmethod
    def _webhook_fields(name: str) -> bool:
        return name not in ("comment", "attachment")
