"""JiraTracker: the Tracker contract on Jira Server/Data Center or Cloud, through the `jira` client.

Every call is safe to repeat because Jira itself is consulted first: the incident label is searched
before a create (and the create ledger covers Cloud's lagging index), comments carry a dedup marker,
a transition checks the current status, remote links and attachments are matched before they are
added, and the page is compared by the hash selfheal stored in an issue property, never by reading
back Jira's re-rendered text. Temporal owns retries, so the client never retries (`max_retries=0`)
and every failure becomes a TrackerError whose `retryable` says whether another attempt can help.

Cloud and Server/Data Center differ: Cloud searches through `/search/jql` (the old `/search`
answers 410), names people by accountId only, and alone has REST v3. The deployment is pinned by
`cloud`, or read from the URL, or from `serverInfo` on first need; `check_deployment` refuses a
setting that contradicts the server.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from io import BufferedReader
from typing import Any, cast

import requests
from jira import JIRA
from jira.client import ResultList
from jira.exceptions import JIRAError
from jira.resources import Issue

from connectors.base import TicketContent, Tracker, TrackerError, dedup_marker
from connectors.jira.ledger import CreateLedger
from connectors.jira.settings import JiraSettings
from models.ids import incident_label, parse_incident_id
from models.incident import TicketRef
from pages.document import JIRA_TEXT_LIMIT, Document, utf16_len
from pages.render import adf_json, adf_plain_text, render, render_adf_fitted, render_wiki_text

#: Statuses worth another attempt besides 5xx: timeouts, edit conflicts, locks, rate limits.
_RETRYABLE_STATUS = frozenset({408, 409, 423, 425, 429})
#: Enough of the issue to decide whether an update would change anything.
_SEARCH_FIELDS = "summary,description,labels,priority,status,assignee"
_COMMENT_PAGE = 100
_MAX_DETAIL = 300
#: The issue property holding the hash of the page selfheal last wrote.
PAGE_PROPERTY = "selfheal.page"
#: Cloud scoped-token API base: `https://api.atlassian.com/ex/jira/{cloudId}`.
_SCOPED = re.compile(r"^https?://[^/]+/ex/jira/[^/]+$")


def cloud_from_url(url: str) -> bool | None:
    """True for URLs only Cloud has (`*.atlassian.net`, the scoped-token gateway); None: ask the server."""
    base = url.rstrip("/")
    host = (re.match(r"^https?://([^/:]+)", base) or [None, ""])[1] or ""
    if _SCOPED.match(base) or host.lower().endswith(".atlassian.net"):
        return True
    return None


def trimmed_note(cut: int) -> str:
    return f"[comment trimmed to Jira's size limit: {cut} characters cut; the full text is in the workflow]"


def fit_comment(body: str, render_body: Callable[[str], str], limit: int = JIRA_TEXT_LIMIT) -> str:
    """`render_body(body)` within `limit` UTF-16 units, cutting the end of `body` and saying so.

    `render_body` adds the dedup marker, so the marker always survives the cut.
    """
    out = render_body(body)
    if utf16_len(out) <= limit:
        return out
    lo, hi = 0, len(body)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        candidate = render_body(f"{body[:mid]}\n{trimmed_note(len(body) - mid)}")
        if utf16_len(candidate) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return render_body(f"{body[:lo]}\n{trimmed_note(len(body) - lo)}")


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

    def __init__(
        self, settings: JiraSettings, *, client: JIRA | None = None, ledger: CreateLedger | None = None
    ) -> None:
        """No request at construction: the worker must boot with Jira down (`check_deployment` asks)."""
        self.settings = settings
        #: Where API calls go (on a scoped token, the api.atlassian.com gateway).
        self.base_url = settings.url.rstrip("/")
        self.client = client if client is not None else self._connect(settings)
        self.ledger = ledger if ledger is not None else CreateLedger()
        self._cloud: bool | None = (
            settings.cloud if settings.cloud is not None else cloud_from_url(settings.url)
        )
        self._site: str | None = settings.site_url.rstrip("/") if settings.site_url else None
        if self._site is None and not _SCOPED.match(self.base_url):
            self._site = self.base_url
        if self._cloud:
            self._mark_cloud()

    def _mark_cloud(self) -> None:
        # The client learns "Cloud" from serverInfo, which it skips; without it the Cloud-only
        # enhanced search silently returns None.
        self.client.deploymentType = "Cloud"

    def _server_info(self) -> dict[str, Any]:
        with _jira_errors("read serverInfo"):
            info: dict[str, Any] = self.client.server_info()
        return info

    def check_deployment(self) -> None:
        """Ask `serverInfo` what this Jira is; refuse settings that contradict it (non-retryable,
        one line naming the setting). A retryable error means Jira is unreachable: detection then
        happens on first use."""
        info = self._server_info()
        cloud = info.get("deploymentType") == "Cloud"
        where = (
            f"{self.base_url} is Jira {info.get('deploymentType') or 'Server'} (serverInfo deploymentType)"
        )
        if self.settings.cloud is not None and self.settings.cloud != cloud:
            raise TrackerError(
                f"tracker.jira.cloud: set to {str(self.settings.cloud).lower()} but {where}", retryable=False
            )
        if self.settings.api_version == 3 and not cloud:
            raise TrackerError(
                f"tracker.jira.api_version: 3 is Jira Cloud only, but {where}", retryable=False
            )
        self._cloud = cloud
        if cloud:
            self._mark_cloud()
        if self._site is None:
            self._site = str(info.get("baseUrl") or self.base_url).rstrip("/")

    @property
    def cloud(self) -> bool:
        """Cloud or Server/DC, as pinned, read from the URL, or asked from serverInfo once."""
        if self._cloud is None:
            self.check_deployment()
        return bool(self._cloud)

    @property
    def site_url(self) -> str:
        """Where people browse tickets (the site, also behind a scoped-token API URL)."""
        if self._site is None:
            self.check_deployment()
        return self._site or self.base_url

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
        """Release the HTTP session (the client holds a pooled connection to Jira) and the ledger's."""
        self.client.close()  # type: ignore[no-untyped-call]
        self.ledger.close()

    # ------------------------------------------------------------------------------- the contract

    def find_open_by_incident(self, incident_id: str) -> TicketRef | None:
        issue = self._find_open(incident_id)
        return None if issue is None else self._ref(issue.key)

    def create_or_update(self, content: TicketContent) -> TicketRef:
        """Search, then the ledger (Cloud's index lags creates), then create; see `connectors.jira.ledger`."""
        labels = _unique([*self.settings.labels, *content.labels, incident_label(content.incident_id)])
        existing = self._find_open(content.incident_id) or self._remembered(content.incident_id)
        if existing is None:
            self.ledger.attempt(content.incident_id)
            description = self.description(content)
            key = self._create(content, labels, description)
            self.ledger.created(content.incident_id, key)  # before anything else can fail
            self._store_digest(key, self._page_digest(content.summary, description))
        else:
            key = existing.key
            self._update(existing, content, labels)
        if content.link_url:
            self._ensure_link(key, content.link_url, content.link_title or content.link_url)
        return self._ref(key)

    def comment(self, key: str, body: str, dedup_key: str) -> bool:
        """Within Jira's 32,767 UTF-16 units: a longer body loses its end, says how much, keeps the marker."""
        marker = dedup_marker(dedup_key)
        if self._has_comment_containing(key, marker):
            return False
        if self.v3:
            # Plain text in ADF text nodes: nothing in `body` can become markup; the marker stays findable.
            adf = json.loads(fit_comment(body, lambda b: adf_json(Document.of_text(f"{b}\n\n{marker}"))))
            self._v3("POST", f"issue/{key}/comment", f"comment on {key}", {"body": adf})
            return True
        with _jira_errors(f"comment on {key}"):
            # The body is escaped (it quotes reasons, labels, model output); the marker is ours, verbatim.
            self.client.add_comment(key, fit_comment(body, lambda b: f"{render_wiki_text(b)}\n\n{marker}"))
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
        """Rewrite summary and description unless their hash matches the one selfheal stored in the
        `selfheal.page` issue property: Jira re-renders what it is sent, so reading the description
        back would differ every time and re-send (and notify watchers) on every update. A closed
        issue is edited too (the page records how it ended)."""
        description = self.description(content)
        digest = self._page_digest(content.summary, description)
        if self._stored_digest(key) == digest:
            return
        self._rest(
            "PUT",
            f"issue/{key}",
            f"update {key}",
            {"fields": {"summary": content.summary, "description": description}},
        )
        self._store_digest(key, digest)

    def assign(self, key: str, who: str) -> bool:
        """Assign (accountId on Cloud, user name on Server/DC) unless already so; True when changed."""
        issue = self._issue(key, "assignee")
        now = issue.raw["fields"].get("assignee") or {}
        if who in (now.get("accountId"), now.get("name")):
            return False
        self._rest("PUT", f"issue/{key}/assignee", f"assign {key}", self._user(who), version=2)
        return True

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
        return self._rest(method, path, action, payload, version=3)

    def _rest(
        self, method: str, path: str, action: str, payload: Any = None, *, version: int | None = None
    ) -> Any:
        """A REST call on the client's session, in the configured API version unless one is given."""
        url = f"{self.base_url}/rest/api/{version or self.settings.api_version}/{path}"
        data = json.dumps(payload) if payload is not None else None
        with _jira_errors(action):
            response = self.client._session.request(method, url, data=data)
            return response.json() if response.content else None

    # ------------------------------------------------------------------------- the page's hash

    def _page_digest(self, summary: str, description: str | dict[str, Any]) -> str:
        body = json.dumps([self.settings.api_version, summary, description], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def _stored_digest(self, key: str) -> str | None:
        """The `selfheal.page` property's sha256, None when absent (never written, or by an old version)."""
        url = f"{self.base_url}/rest/api/2/issue/{key}/properties/{PAGE_PROPERTY}"
        try:
            with _jira_errors(f"read {PAGE_PROPERTY} of {key}"):
                response = self.client._session.request("GET", url)
                value = (response.json() or {}).get("value")
        except TrackerError as err:
            cause = err.__cause__
            if isinstance(cause, JIRAError) and cause.status_code == 404 and self._exists(key):
                return None
            raise
        return str(value.get("sha256")) if isinstance(value, dict) and value.get("sha256") else None

    def _exists(self, key: str) -> bool:
        self._issue(key, "summary")  # raises the issue's own 404 when the issue is missing
        return True

    def _store_digest(self, key: str, digest: str) -> None:
        self._rest(
            "PUT",
            f"issue/{key}/properties/{PAGE_PROPERTY}",
            f"store {PAGE_PROPERTY} of {key}",
            {"sha256": digest},
            version=2,
        )

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
        return TicketRef(key=key, url=f"{self.site_url}/browse/{key}", tracker=self.name)

    def _user(self, who: str) -> dict[str, str]:
        """Cloud identifies users by accountId only; Server/DC by user name."""
        return {"accountId": who} if self.cloud else {"name": who}

    def _remembered(self, incident_id: str) -> Issue | None:
        """The ledger's issue for an incident search did not find (Cloud's index lag), or None.

        A key is read back by `GET /issue/{key}` (consistent); an attempt without a key (its answer
        was lost) within `index_lag_seconds` is a retryable wait, not a second create.
        """
        record = self.ledger.get(incident_id)
        if record is None:
            return None
        if record.key is not None:
            try:
                issue = self._issue(record.key, _SEARCH_FIELDS)
            except TrackerError as err:
                if err.retryable:
                    raise
                self.ledger.forget(incident_id)  # deleted or moved out of reach: create anew
                return None
            category = ((issue.raw["fields"].get("status") or {}).get("statusCategory") or {}).get("key")
            return None if category == "done" else issue
        if self.ledger.age(record) < self.settings.index_lag_seconds:
            raise TrackerError(
                f"jira create for incident {incident_id}: an earlier create's answer was lost and search"
                f" does not show it yet; waiting up to {self.settings.index_lag_seconds:g}s for Jira's index",
                retryable=True,
            )
        return None

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
            if self.cloud:
                # Cloud retired /search; /search/jql is the only search there.
                found = self.client.enhanced_search_issues(jql, maxResults=1, fields=_SEARCH_FIELDS)
            else:
                found = self.client.search_issues(jql, maxResults=1, fields=_SEARCH_FIELDS)
        if not isinstance(found, ResultList):
            raise TrackerError(f"jira search: unexpected answer {type(found).__name__}", retryable=False)
        return cast(Issue, found[0]) if found else None

    def _create(self, content: TicketContent, labels: list[str], description: str | dict[str, Any]) -> str:
        fields: dict[str, Any] = {
            "project": {"key": self.settings.project},
            "issuetype": {"name": self.settings.issue_type},
            "summary": content.summary,
            "description": description,
            "labels": labels,
            "priority": {"name": content.priority},
        }
        if content.assignee:
            fields["assignee"] = self._user(content.assignee)
        if self.v3:
            created = self._v3("POST", "issue", "create issue", {"fields": fields})
            key = str(created["key"])
        else:
            with _jira_errors("create issue"):
                # prefetch=False: the key is all we need, and one request less to fail.
                key = str(self.client.create_issue(fields=fields, prefetch=False).key)
        return key

    def _update(self, issue: Issue, content: TicketContent, labels: list[str]) -> None:
        """Send only what differs, so a repeated notification neither spams watchers nor drops labels."""
        now: dict[str, Any] = issue.raw.get("fields") or {}
        fields: dict[str, Any] = {}
        description = self.description(content)
        digest = self._page_digest(content.summary, description)
        # The page by the hash selfheal stored, never by Jira's re-rendered text (see update_page).
        page_changed = self._stored_digest(issue.key) != digest
        if page_changed:
            fields["summary"] = content.summary
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
        if fields or update:
            self._rest(
                "PUT", f"issue/{issue.key}", f"update {issue.key}", {"fields": fields, "update": update}
            )
        if page_changed:
            self._store_digest(issue.key, digest)

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
