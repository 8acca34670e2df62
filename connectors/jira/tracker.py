"""JiraTracker: the Tracker contract on Jira Server/Data Center or Cloud, through the `jira` client.

Every call is safe to repeat because Jira itself is consulted first: the incident label is searched
before a create, comments carry a dedup marker, a transition checks the current status, remote
links and attachments are matched before they are added. Temporal owns retries, so the client
never retries (`max_retries=0`) and every failure becomes a TrackerError whose `retryable` says
whether another attempt can help.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from io import BufferedReader
from typing import Any, cast

import requests
from jira import JIRA
from jira.client import ResultList
from jira.exceptions import JIRAError
from jira.resources import Issue

from connectors.base import TicketContent, Tracker, TrackerError, dedup_marker
from connectors.jira.settings import JiraSettings
from models.ids import incident_label, parse_incident_id
from models.incident import TicketRef
from pages.document import Document
from pages.render import adf_plain_text, render, render_adf_fitted, render_wiki_text

#: Statuses worth another attempt besides 5xx: timeouts, edit conflicts, locks, rate limits.
_RETRYABLE_STATUS = frozenset({408, 409, 423, 425, 429})
#: Enough of the issue to decide whether an update would change anything.
_SEARCH_FIELDS = "summary,description,labels,priority,status,assignee"
_COMMENT_PAGE = 100
_MAX_DETAIL = 300


def _jql_string(value: str) -> str:
    """A JQL string literal; quoting keeps reserved characters and words in labels harmless."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if value:
            seen.setdefault(value, None)
    return list(seen)


def _jira_message(exc: JIRAError) -> str:
    """Jira's own words, with field names kept: the client's text drops the keys of `errors`."""
    parts: list[str] = []
    response = exc.response
    if response is not None:
        try:
            data: Any = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            parts.extend(str(m) for m in data.get("errorMessages") or [])
            errors = data.get("errors")
            if isinstance(errors, dict):
                parts.extend(f"{name}: {message}" for name, message in errors.items())
        elif response.text:
            parts.append(response.text.strip()[:_MAX_DETAIL])
        retry_after = response.headers.get("Retry-After")
        if retry_after:
            parts.append(f"retry after {retry_after}s")
    if not parts and exc.text:
        parts.append(str(exc.text)[:_MAX_DETAIL])
    return "; ".join(parts) or "no error message"


def _translate(action: str, exc: JIRAError) -> TrackerError:
    status = exc.status_code
    retryable = status is not None and (status in _RETRYABLE_STATUS or status >= 500)
    where = f"HTTP {status}" if status is not None else "client error"
    return TrackerError(f"jira {action}: {where}: {_jira_message(exc)}", retryable=retryable)


@contextmanager
def _jira_errors(action: str) -> Iterator[None]:
    """Map the client's failures onto TrackerError, deciding what a retry could fix."""
    try:
        yield
    except JIRAError as exc:
        raise _translate(action, exc) from exc
    except requests.exceptions.JSONDecodeError as exc:
        # A 200 that is not JSON is an SSO login page or a proxy, not a passing fault.
        raise TrackerError(
            f"jira {action}: answer was not JSON (login page or proxy?)", retryable=False
        ) from exc
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema) as exc:
        raise TrackerError(f"jira {action}: bad url: {exc}", retryable=False) from exc
    except requests.RequestException as exc:  # refused, reset, timed out, TLS
        raise TrackerError(f"jira {action}: {type(exc).__name__}: {exc}", retryable=True) from exc


class JiraTracker(Tracker):
    """Tickets in one Jira project, found again by the `selfheal-<incident>` label."""

    name = "jira"

    def __init__(self, settings: JiraSettings, *, client: JIRA | None = None) -> None:
        self.settings = settings
        self.base_url = settings.url.rstrip("/")
        self.client = client if client is not None else self._connect(settings)
        if settings.cloud:
            # The client learns "Cloud" from serverInfo, which we skip; without it the Cloud-only
            # enhanced search silently returns None.
            self.client.deploymentType = "Cloud"

    @staticmethod
    def _connect(settings: JiraSettings) -> JIRA:
        """Basic auth (Cloud: e-mail + API token) when `user` is set, else a Server/DC PAT."""
        token = settings.api_token.get_secret_value() if settings.api_token is not None else ""
        if not token:
            raise TrackerError("jira: api_token is required", retryable=False)
        common: dict[str, Any] = {
            "get_server_info": False,  # no round trip at start-up: the worker must boot with Jira down
            "max_retries": 0,  # Temporal retries the activity; the client must not stack its own
            "timeout": settings.timeout_seconds,
        }
        if settings.user:
            return JIRA(settings.url, basic_auth=(settings.user, token), **common)
        return JIRA(settings.url, token_auth=token, **common)

    def close(self) -> None:
        """Release the HTTP session; the client holds a pooled connection to Jira."""
        self.client.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------------------- the contract

    def find_open_by_incident(self, incident_id: str) -> TicketRef | None:
        issue = self._find_open(incident_id)
        return None if issue is None else self._ref(issue.key)

    def create_or_update(self, content: TicketContent) -> TicketRef:
        labels = _unique([*self.settings.labels, *content.labels, incident_label(content.incident_id)])
        existing = self._find_open(content.incident_id)
        if existing is None:
            key = self._create(content, labels)
        else:
            key = existing.key
            self._update(existing, content, labels)
        if content.link_url:
            self._ensure_link(key, content.link_url, content.link_title or content.link_url)
        return self._ref(key)

    def comment(self, key: str, body: str, dedup_key: str) -> bool:
        marker = dedup_marker(dedup_key)
        if self._has_comment_containing(key, marker):
            return False
        if self.v3:
            # Plain text in ADF text nodes: nothing in `body` can become markup; the marker stays findable.
            adf = render_adf_fitted(Document.of_text(f"{body}\n\n{marker}"))
            self._v3("POST", f"issue/{key}/comment", f"comment on {key}", {"body": adf})
            return True
        with _jira_errors(f"comment on {key}"):
            # The body is escaped (it quotes reasons, labels, model output); the marker is ours, verbatim.
            self.client.add_comment(key, f"{render_wiki_text(body)}\n\n{marker}")
        return True

    def transition(self, key: str, status: str) -> bool:
        if self._status_is(key, status):
            return False
        with _jira_errors(f"list transitions of {key}"):
            available: list[dict[str, Any]] = self.client.transitions(key)
        chosen = self._pick_transition(available, status)
        if chosen is None:
            offered = (
                ", ".join(f"{t.get('name')} -> {t.get('to', {}).get('name')}" for t in available) or "none"
            )
            raise TrackerError(
                f"jira transition {key}: no transition to {status!r}; available: {offered}", retryable=False
            )
        try:
            with _jira_errors(f"transition {key} to {status}"):
                self.client.transition_issue(key, str(chosen["id"]))
        except TrackerError:
            # A human (or a previous attempt whose answer was lost) may have moved it meanwhile.
            if self._status_is(key, status):
                return False
            raise
        return True

    def update_page(self, key: str, content: TicketContent) -> None:
        """Send only what differs; a closed issue is edited too (the page records how it ended)."""
        if self.v3:
            now = self._v3_fields(key, "summary,description")
        else:
            issue = self._issue(key, "summary,description")
            now = issue.raw.get("fields") or {}
        fields: dict[str, Any] = {}
        if now.get("summary") != content.summary:
            fields["summary"] = content.summary
        description = self.description(content)
        if (now.get("description") or "") != description:
            fields["description"] = description
        if not fields:
            return
        if self.v3:
            self._v3("PUT", f"issue/{key}", f"update {key}", {"fields": fields})
            return
        with _jira_errors(f"update {key}"):
            issue.update(fields=fields)

    # ------------------------------------------------------------------------------- rendering

    @property
    def v3(self) -> bool:
        return self.settings.api_version == 3

    def description(self, content: TicketContent) -> str | dict[str, Any]:
        """The page in this Jira's format: ADF on REST v3, wiki markup on v2; within Jira's limit."""
        if self.v3:
            return render_adf_fitted(content.page)
        return render(content.page, "wiki")

    def _v3(self, method: str, path: str, action: str, payload: Any = None) -> Any:
        """A REST v3 call on the client's session (auth, timeout, no retries), mapped to TrackerError."""
        url = f"{self.base_url}/rest/api/3/{path}"
        data = json.dumps(payload) if payload is not None else None
        with _jira_errors(action):
            response = self.client._session.request(method, url, data=data)
            return response.json() if response.content else None

    def _v3_fields(self, key: str, fields: str) -> dict[str, Any]:
        issue = self._v3("GET", f"issue/{key}?fields={fields}", f"read {key}")
        found: dict[str, Any] = (issue or {}).get("fields") or {}
        return found

    # ---------------------------------------------------------------------------------- helpers

    def set_priority(self, key: str, priority: str) -> None:
        """Set the priority unless it already is that, so a retried escalation changes nothing."""
        issue = self._issue(key, "priority")
        current = (issue.raw["fields"].get("priority") or {}).get("name")
        if current != priority:
            with _jira_errors(f"set priority of {key}"):
                issue.update(fields={"priority": {"name": priority}})

    def add_labels(self, key: str, labels: list[str]) -> None:
        """Add labels with Jira's `add` operation: never removes labels someone else put there."""
        issue = self._issue(key, "labels")
        current = issue.raw["fields"].get("labels") or []
        missing = [label for label in _unique(labels) if label not in current]
        if missing:
            with _jira_errors(f"add labels to {key}"):
                issue.update(update={"labels": [{"add": label} for label in missing]})

    def attach(self, key: str, filename: str, data: bytes) -> bool:
        """Upload a file unless one with the same name and size is already there; True when added."""
        if not data:
            raise TrackerError(f"jira attach to {key}: {filename} is empty", retryable=False)
        issue = self._issue(key, "attachment")
        for existing in issue.raw["fields"].get("attachment") or []:
            if existing.get("filename") == filename and existing.get("size") == len(data):
                return False
        with _jira_errors(f"attach {filename} to {key}"):
            # The client wants a file object; a BytesIO is one, though not the BufferedReader it names.
            self.client.add_attachment(key, cast(BufferedReader, io.BytesIO(data)), filename=filename)
        return True

    def _ref(self, key: str) -> TicketRef:
        return TicketRef(key=key, url=f"{self.base_url}/browse/{key}", tracker=self.name)

    def _user(self, who: str) -> dict[str, str]:
        """Cloud identifies users by accountId only; Server/DC by user name."""
        return {"accountId": who} if self.settings.cloud else {"name": who}

    def _issue(self, key: str, fields: str) -> Issue:
        with _jira_errors(f"read {key}"):
            return self.client.issue(key, fields=fields)

    def _find_open(self, incident_id: str) -> Issue | None:
        """The newest not-done issue carrying the incident label, or None."""
        jql = (
            f"project = {_jql_string(self.settings.project)}"
            f" AND labels = {_jql_string(incident_label(incident_id))}"
            " AND statusCategory != Done ORDER BY created DESC"
        )
        with _jira_errors("search"):
            if self.settings.cloud:
                # Cloud retired /search; /search/jql is the only search there.
                found = self.client.enhanced_search_issues(jql, maxResults=1, fields=_SEARCH_FIELDS)
            else:
                found = self.client.search_issues(jql, maxResults=1, fields=_SEARCH_FIELDS)
        if not isinstance(found, ResultList):
            raise TrackerError(f"jira search: unexpected answer {type(found).__name__}", retryable=False)
        return cast(Issue, found[0]) if found else None

    def _create(self, content: TicketContent, labels: list[str]) -> str:
        fields: dict[str, Any] = {
            "project": {"key": self.settings.project},
            "issuetype": {"name": self.settings.issue_type},
            "summary": content.summary,
            "description": self.description(content),
            "labels": labels,
            "priority": {"name": content.priority},
        }
        if content.assignee:
            fields["assignee"] = self._user(content.assignee)
        if self.v3:
            created = self._v3("POST", "issue", "create issue", {"fields": fields})
            return str(created["key"])
        with _jira_errors("create issue"):
            # prefetch=False: the key is all we need, and one request less to fail.
            issue = self.client.create_issue(fields=fields, prefetch=False)
        return str(issue.key)

    def _update(self, issue: Issue, content: TicketContent, labels: list[str]) -> None:
        """Send only what differs, so a repeated notification neither spams watchers nor drops labels."""
        now: dict[str, Any] = issue.raw.get("fields") or {}
        fields: dict[str, Any] = {}
        if now.get("summary") != content.summary:
            fields["summary"] = content.summary
        description = self.description(content)
        # Search answers in v2 (description as wiki text); on v3 compare with the stored ADF.
        current = (
            self._v3_fields(issue.key, "description").get("description")
            if self.v3
            else now.get("description")
        )
        if (current or "") != description:
            fields["description"] = description
        if (now.get("priority") or {}).get("name") != content.priority:
            fields["priority"] = {"name": content.priority}
        if content.assignee:
            assignee = now.get("assignee") or {}
            if content.assignee not in (assignee.get("name"), assignee.get("accountId")):
                fields["assignee"] = self._user(content.assignee)
        current = now.get("labels") or []
        update = {"labels": [{"add": label} for label in labels if label not in current]}
        if not update["labels"]:
            update = {}
        if (fields or update) and self.v3:
            self._v3("PUT", f"issue/{issue.key}", f"update {issue.key}", {"fields": fields, "update": update})
        elif fields or update:
            with _jira_errors(f"update {issue.key}"):
                issue.update(fields=fields, update=update)

    def _ensure_link(self, key: str, url: str, title: str) -> None:
        """Add the Temporal UI link once; a retry finds it by URL and adds nothing."""
        with _jira_errors(f"list remote links of {key}"):
            links = self.client.remote_links(key)
        for link in links:
            if (link.raw.get("object") or {}).get("url") == url:
                return
        with _jira_errors(f"add remote link to {key}"):
            # add_simple_link, not add_remote_link: the latter first lists application links,
            # which non-admin accounts may not do (a warning and a wasted request per call).
            self.client.add_simple_link(key, {"url": url, "title": title})

    def _has_comment_containing(self, key: str, marker: str) -> bool:
        if self.v3:
            return self._v3_has_comment_containing(key, marker)
        start = 0
        while True:
            with _jira_errors(f"read comments of {key}"):
                page = self.client.comments(key, start_at=start, max_results=_COMMENT_PAGE)
            if any(marker in str(c.raw.get("body") or "") for c in page):
                return True
            if len(page) < _COMMENT_PAGE:
                return False
            start += len(page)

    def _v3_has_comment_containing(self, key: str, marker: str) -> bool:
        """Comments on v3 are ADF: the marker is searched in their text nodes."""
        start = 0
        while True:
            page = self._v3(
                "GET",
                f"issue/{key}/comment?startAt={start}&maxResults={_COMMENT_PAGE}",
                f"read comments of {key}",
            )
            comments = (page or {}).get("comments") or []
            if any(marker in adf_plain_text(c.get("body")) for c in comments):
                return True
            if len(comments) < _COMMENT_PAGE:
                return False
            start += len(comments)

    def _status_is(self, key: str, status: str) -> bool:
        issue = self._issue(key, "status")
        current = (issue.raw["fields"].get("status") or {}).get("name") or ""
        return bool(current.casefold() == status.casefold())

    @staticmethod
    def _pick_transition(available: list[dict[str, Any]], status: str) -> dict[str, Any] | None:
        """Prefer a transition whose target status matches; fall back to the transition's name."""
        wanted = status.casefold()
        for transition in available:
            if str((transition.get("to") or {}).get("name", "")).casefold() == wanted:
                return transition
        for transition in available:
            if str(transition.get("name", "")).casefold() == wanted:
                return transition
        return None

    # ------------------------------------------------------------------------ the Jira webhook's

    def incident_for_issue(self, key_or_id: str) -> str | None:
        """The incident an issue is the ticket of, from its `selfheal-<incident id>` label as Jira
        stores it (never from labels in a webhook event, which Cloud and DC comment events lack and
        anyone could write); None for an unknown issue, one outside our project or without the label.
        Read-only, so a retry is harmless."""
        with _jira_errors(f"read {key_or_id}"):
            try:
                issue = self.client.issue(key_or_id, fields="labels,project")
            except JIRAError as exc:
                if exc.status_code == 404:  # unknown, deleted, or not visible to our bot
                    return None
                raise
        fields = issue.raw.get("fields") or {}
        if str((fields.get("project") or {}).get("key") or "") != self.settings.project:
            return None
        for label in fields.get("labels") or []:
            if isinstance(label, str) and label.startswith("selfheal-"):
                candidate = label.removeprefix("selfheal-")
                if parse_incident_id(candidate) is not None:
                    return candidate
        return None
