"""The fake itself: state, lifecycle, the request log, routing and the request plumbing;
the concerns are its mixins, one module each.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.jira.attachments import AttachmentsMixin
from tests.support.jira.comments import CommentsMixin
from tests.support.jira.faults import FaultsMixin, HeldCreate, _FailRule
from tests.support.jira.issues import IssuesMixin
from tests.support.jira.links import RemoteLinksMixin
from tests.support.jira.metadata import MetadataMixin
from tests.support.jira.model import (
    API,
    API3,
    DEFAULT_WORKFLOW,
    NOT_AUTHENTICATED,
    JsonDict,
    WorkflowStatus,
    _Issue,
)
from tests.support.jira.properties import PropertiesMixin
from tests.support.jira.search import SearchMixin
from tests.support.jira.server import _fail, _HTTPError, _Response, _Server
from tests.support.jira.transitions import TransitionsMixin
from tests.support.jira.users import UsersMixin
from tests.support.jira.webhooks import WebhookDelivery, WebhooksMixin, _Webhook

_Route = tuple[str, re.Pattern[str], Callable[..., _Response], bool]


class JiraFake(
    FaultsMixin,
    UsersMixin,
    MetadataMixin,
    IssuesMixin,
    CommentsMixin,
    TransitionsMixin,
    RemoteLinksMixin,
    AttachmentsMixin,
    SearchMixin,
    PropertiesMixin,
    WebhooksMixin,
):
    """A Jira Server/Cloud stand-in on 127.0.0.1; see the package docstring (`tests.support.jira`).

    `users` maps user name to API token (basic auth `user:token`) — the token alone also works as a
    Bearer PAT. `people` are further users that exist (assignable, can comment via the helpers) but
    cannot log in. `cloud=True` makes `serverInfo` say Cloud and retires `GET /search` with 410, as
    Jira Cloud did; otherwise `GET /search/jql` is 404, as on Server/Data Center. `search_lag_seconds`
    keeps new issues out of search results for that long, like Jira's asynchronous index;
    `search_lag_searches` keeps each new issue out of that many searches (deterministic for tests)
    unless a `/search/jql` names it in `reconcileIssues`, as Cloud allows.

    Cloud only: REST v3 (Server/DC answers 404 there), people by `accountId` (a `name` is refused),
    a v2 description read back re-rendered from its ADF store (not byte-equal to what was sent),
    and `cloud_id`, which also serves the API under `/ex/jira/{cloud_id}` as the scoped-token
    gateway does, with `serverInfo.baseUrl` = `site_url`. Server/DC refuses an `accountId`.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        projects: Sequence[str] = ("OPS",),
        people: Sequence[str] = (),
        cloud: bool = False,
        workflow: Sequence[WorkflowStatus] = DEFAULT_WORKFLOW,
        search_lag_seconds: float = 0.0,
        search_lag_searches: int = 0,
        hold_timeout_seconds: float = 120.0,
        cloud_id: str | None = None,
        site_url: str | None = None,
    ) -> None:
        self._tokens: dict[str, str] = dict(users if users is not None else {"bot": "token"})
        self._people: set[str] = set(self._tokens) | set(people)
        self._projects: dict[str, JsonDict] = {
            key: {"id": str(10000 + i), "key": key, "name": f"{key} project"}
            for i, key in enumerate(projects)
        }
        self.cloud = cloud
        self._workflow: dict[str, WorkflowStatus] = {s.name: s for s in workflow}
        self._search_lag = search_lag_seconds
        self.search_lag_searches = search_lag_searches
        self._cloud_prefix = f"/ex/jira/{cloud_id}" if cloud and cloud_id else None
        self._site_url = site_url
        self._hold_timeout = hold_timeout_seconds
        self._lock = threading.RLock()
        self._issues: dict[str, _Issue] = {}
        self._counters: dict[str, int] = {}
        self._ids = itertools.count(10000)
        self._requests: list[tuple[str, str]] = []
        self._fail_rules: list[_FailRule] = []
        self._holds: list[HeldCreate] = []
        self._active_holds: list[HeldCreate] = []
        self._outage: tuple[float, int] | None = None
        self._stall: tuple[float, float] | None = None
        self._webhook: _Webhook | None = None
        self._deliveries: list[WebhookDelivery] = []
        self._server: _Server | None = None
        self._base_url = ""
        self._thread: threading.Thread | None = None
        self._routes: list[_Route] = self._build_routes()

    def start(self) -> JiraFake:
        server = _Server(self)
        self._server = server
        host, port = server.server_address[:2]
        self._base_url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="jira-fake", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_create()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> JiraFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:54321` (what JiraSettings.url should hold)."""
        if not self._base_url:
            raise RuntimeError("JiraFake was never started; use it as a context manager")
        return self._base_url

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request seen, as (method, path without query), oldest first."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def count(self, method: str, path_regex: str) -> int:
        """How many requests matched `method` and (fully) `path_regex`."""
        pattern = re.compile(path_regex)
        return sum(1 for m, p in self.requests if m == method.upper() and pattern.fullmatch(p))

    def _base(self) -> str:
        return self.url

    def _next_id(self) -> int:
        return next(self._ids)

    def _build_routes(self) -> list[_Route]:
        def r(method: str, path: str, handler: Callable[..., _Response], auth: bool = True) -> _Route:
            return (method, re.compile(path), handler, auth)

        k = r"(?P<key>[^/]+)"
        prop = rf"/rest/api/(?:2|3|latest)/issue/{k}/properties"
        return [
            r("GET", prop, self._h_list_properties),
            r("GET", rf"{prop}/(?P<prop>[^/]+)", self._h_get_property),
            r("PUT", rf"{prop}/(?P<prop>[^/]+)", self._h_set_property),
            r("DELETE", rf"{prop}/(?P<prop>[^/]+)", self._h_delete_property),
            r("PUT", rf"{API}/issue/{k}/assignee", self._h_assign),
            r("PUT", rf"{API3}/issue/{k}/assignee", self._h_assign),
            r("GET", rf"{API}/serverInfo", self._h_server_info, auth=False),
            r("GET", rf"{API}/field", self._h_fields),
            r("GET", rf"{API}/myself", self._h_myself),
            r("GET", rf"{API}/project", self._h_projects),
            r("GET", rf"{API}/project/{k}", self._h_project),
            r("GET", rf"{API}/priority", self._h_priorities),
            r("GET", rf"{API}/issuetype", self._h_issuetypes),
            r("GET", rf"{API}/status", self._h_statuses),
            r("POST", rf"{API}/issue", self._h_create),
            r("GET", rf"{API}/issue/{k}", self._h_get_issue),
            r("PUT", rf"{API}/issue/{k}", self._h_edit_issue),
            r("GET", rf"{API}/issue/{k}/comment", self._h_list_comments),
            r("POST", rf"{API}/issue/{k}/comment", self._h_add_comment),
            r("GET", rf"{API}/issue/{k}/transitions", self._h_list_transitions),
            r("POST", rf"{API}/issue/{k}/transitions", self._h_transition),
            r("GET", rf"{API}/issue/{k}/remotelink", self._h_list_remote_links),
            r("POST", rf"{API}/issue/{k}/remotelink", self._h_add_remote_link),
            r("POST", rf"{API}/issue/{k}/attachments", self._h_attach),
            r("GET", rf"{API}/search", self._h_search),
            r("POST", rf"{API}/search", self._h_search),
            r("GET", rf"{API}/search/jql", self._h_search_jql),
            r("POST", rf"{API}/search/jql", self._h_search_jql),
            r("POST", rf"{API3}/issue", functools.partial(self._h_create, v3=True)),
            r("GET", rf"{API3}/issue/{k}", functools.partial(self._h_get_issue, v3=True)),
            r("PUT", rf"{API3}/issue/{k}", functools.partial(self._h_edit_issue, v3=True)),
            r("GET", rf"{API3}/issue/{k}/comment", functools.partial(self._h_list_comments, v3=True)),
            r("POST", rf"{API3}/issue/{k}/comment", functools.partial(self._h_add_comment, v3=True)),
            r("GET", r"/secure/attachment/(?P<aid>\d+)/(?P<name>[^/]+)", self._h_attachment_content),
        ]

    def _dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> _Response:
        parts = urlsplit(raw_path)
        path = unquote(parts.path).rstrip("/") or "/"
        if self._cloud_prefix is not None and path.startswith(self._cloud_prefix + "/"):
            path = path[len(self._cloud_prefix) :]  # the scoped-token gateway forwards to the site
        query = parse_qs(parts.query, keep_blank_values=True)
        self._stall_if_stalling()
        with self._lock:
            self._requests.append((method, path))
            rule = self._outage_rule() or next(
                (
                    f
                    for f in self._fail_rules
                    if f.count > 0
                    and (f.method is None or f.method == method)
                    and (f.path is None or f.path.search(path))
                ),
                None,
            )
            if rule is not None and rule.count > 0:
                rule.count -= 1
        try:
            if rule is not None:
                return self._injected_failure(rule)
            user = self._authenticate(headers)
            allowed: list[str] = []
            for route_method, pattern, handler, needs_auth in self._routes:
                m = pattern.fullmatch(path)
                if m is None or (not self.cloud and path.startswith("/rest/api/3/")):
                    continue  # REST v3 is Cloud's; Server/Data Center has no such resource
                if route_method != method:
                    allowed.append(route_method)
                    continue
                if needs_auth and user is None:
                    raise _HTTPError(
                        401,
                        {"errorMessages": [NOT_AUTHENTICATED], "errors": {}},
                        {"WWW-Authenticate": 'Basic realm="protected-area"'},
                    )
                return handler(
                    user=user, method=method, query=query, headers=headers, body=body, **m.groupdict()
                )
            if allowed:
                raise _HTTPError(405, "", {"Allow": ", ".join(allowed)})
            _fail(404, [f"null for uri: {self._base()}{raw_path}"])
        except _HTTPError as exc:
            if isinstance(exc.payload, dict):
                body_out = json.dumps(exc.payload).encode()
                exc.headers.setdefault("Content-Type", "application/json;charset=UTF-8")
            else:
                body_out = exc.payload.encode()
                exc.headers.setdefault("Content-Type", "text/plain;charset=UTF-8")
            return _Response(exc.status, body_out, exc.headers)

    @staticmethod
    def _json(status: int, payload: Any) -> _Response:
        return _Response(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json;charset=UTF-8"}
        )

    @staticmethod
    def _body_json(headers: Mapping[str, str], body: bytes) -> JsonDict:
        ctype = headers.get("content-type", "")
        if "json" not in ctype.lower():
            raise _HTTPError(415, {"errorMessages": ["Unsupported Media Type"], "errors": {}})
        try:
            data = json.loads(body or b"null")
        except ValueError as exc:
            _fail(400, [f"Unexpected character: {exc}"])
        if not isinstance(data, dict):
            _fail(400, ["Can not deserialize instance of object out of non-object token"])
        return data

    @staticmethod
    def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
        raw = query.get(name, [""])[-1]
        if raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            _fail(400, [f"The value '{raw}' is not a valid number for the parameter '{name}'."])
