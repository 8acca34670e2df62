"""Search: the REST endpoints and the meaning of JQL over the fake's issues."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from tests.support.jira.adf import adf_text
from tests.support.jira.jql import JQLError, _BoolNode, _Clause, _Node, _parse_date, parse_jql
from tests.support.jira.model import ISSUE_TYPES, PRIORITIES, RESOLUTIONS, STATUS_CATEGORIES, JsonDict, _Issue
from tests.support.jira.server import _fail, _Response


class SearchMixin:
    """Part of `JiraFake`: `GET|POST /search` (Server; retired on Cloud) and `/search/jql` (Cloud),
    running the parsed JQL against the issues after validating it as Jira does."""

    def _search_params(
        self, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes, method: str
    ) -> tuple[str, list[str], int, str | None]:
        """(jql, fields, maxResults, startAt-or-token) from the query string or a POST body."""
        if method == "POST":
            data = self._body_json(headers, body)
            raw_fields = data.get("fields") or []
            fields = [raw_fields] if isinstance(raw_fields, str) else [str(f) for f in raw_fields]
            token = data.get("nextPageToken", data.get("startAt"))
            return (
                str(data.get("jql") or ""),
                fields,
                int(data.get("maxResults", 50)),
                None if token is None else str(token),
            )
        token = query.get("nextPageToken", query.get("startAt", [None]))[-1]
        return (
            query.get("jql", [""])[-1],
            query.get("fields", []),
            self._int_param(query, "maxResults", 50),
            token,
        )

    def _reconcile_ids(
        self, query: Mapping[str, list[str]], headers: Mapping[str, str], body: bytes, method: str
    ) -> set[int]:
        """`reconcileIssues`: issue ids Cloud must show read-after-write consistent (at most 50)."""
        if method == "POST":
            raw: Any = self._body_json(headers, body).get("reconcileIssues") or []
        else:
            raw = [n for v in query.get("reconcileIssues", []) for n in v.split(",") if n.strip()]
        if not isinstance(raw, list) or len(raw) > 50:
            _fail(400, ["reconcileIssues accepts up to 50 issue ids."])
        try:
            return {int(i) for i in raw}
        except (TypeError, ValueError):
            _fail(400, ["reconcileIssues must be a list of issue ids."])

    def _run_jql(
        self, jql: str, user: str, *, bounded: bool, reconcile: set[int] = frozenset()
    ) -> list[_Issue]:  # type: ignore[assignment]
        try:
            parsed = parse_jql(jql)
        except JQLError as exc:
            _fail(400, [str(exc)])
        if bounded and parsed.where is None:
            _fail(
                400,
                [
                    "Unbounded JQL queries are not allowed here. Please add a search restriction to "
                    "your query."
                ],
            )
        try:
            if parsed.where is not None:
                self._check_node(parsed.where, user)
            now = datetime.now(UTC)
            visible = [
                i
                for i in self._issues.values()
                if i.id in reconcile
                or ((now - i.created).total_seconds() >= self._search_lag and i.unindexed_searches <= 0)
            ]
            for i in self._issues.values():  # every search brings the index one step closer
                i.unindexed_searches = max(0, i.unindexed_searches - 1)
            hits = [i for i in visible if parsed.where is None or self._eval(parsed.where, i, user, now)]
            return self._sort(hits, parsed.order or (("created", True),))
        except JQLError as exc:
            _fail(400, [str(exc)])

    def _h_search(
        self,
        user: str,
        method: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        **_: Any,
    ) -> _Response:
        if self.cloud:
            _fail(
                410,
                [
                    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
                    "A full migration guideline is available at "
                    "https://developer.atlassian.com/changelog/#CHANGE-2046"
                ],
            )
        jql, fields, limit, start_raw = self._search_params(query, headers, body, method)
        start = int(start_raw or 0)
        limit = max(0, min(limit, 1000))
        with self._lock:
            hits = self._run_jql(jql, user, bounded=False)
            want = self._field_filter(fields, "*navigable")
            page = hits[start : start + limit]
            return self._json(
                200,
                {
                    "expand": "schema,names",
                    "startAt": start,
                    "maxResults": limit,
                    "total": len(hits),
                    "issues": [self._issue_json(i, want) for i in page],
                },
            )

    def _h_search_jql(
        self,
        user: str,
        method: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        **_: Any,
    ) -> _Response:
        if not self.cloud:
            _fail(404, [f"null for uri: {self._base()}/rest/api/2/search/jql"])
        jql, fields, limit, token = self._search_params(query, headers, body, method)
        start = 0
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
            except ValueError:
                _fail(400, ["The provided next page token is invalid or expired."])
        names = [n.strip() for v in fields for n in v.split(",") if n.strip()]
        id_only = not names or names == ["id"]
        limit = max(0, min(limit, 5000 if id_only else 100))
        reconcile = self._reconcile_ids(query, headers, body, method)
        with self._lock:
            hits = self._run_jql(jql, user, bounded=True, reconcile=reconcile)
            page = hits[start : start + limit]
            if id_only:
                issues = [{"id": str(i.id)} for i in page]
            else:
                want = self._field_filter(fields, "*navigable")
                issues = [self._issue_json(i, want) for i in page]
            payload: JsonDict = {"issues": issues, "isLast": start + limit >= len(hits)}
            if not payload["isLast"]:
                payload["nextPageToken"] = base64.urlsafe_b64encode(
                    f"offset:{start + limit}".encode()
                ).decode()
            return self._json(200, payload)

    _JQL_FIELDS = {
        "project": "project",
        "labels": "labels",
        "label": "labels",
        "status": "status",
        "statuscategory": "statusCategory",
        "resolution": "resolution",
        "priority": "priority",
        "issuetype": "issuetype",
        "type": "issuetype",
        "assignee": "assignee",
        "reporter": "reporter",
        "key": "key",
        "issuekey": "key",
        "issue": "key",
        "id": "key",
        "summary": "summary",
        "description": "description",
        "comment": "comment",
        "text": "text",
        "created": "created",
        "createddate": "created",
        "updated": "updated",
        "updateddate": "updated",
    }

    _TEXT_FIELDS = {"summary", "description", "comment", "text"}

    _DATE_FIELDS = {"created", "updated"}

    _EMPTYABLE = {"labels", "resolution", "assignee", "priority", "description"}

    def _canonical_field(self, name: str) -> str:
        canonical = self._JQL_FIELDS.get(name.lower())
        if canonical is None:
            raise JQLError(f"Field '{name}' does not exist or you do not have permission to view it.")
        return canonical

    def _check_node(self, node: _Node, user: str) -> None:
        """Jira validates the whole query (fields, operators, values) before running it."""
        if isinstance(node, _BoolNode):
            for child in node.children:
                self._check_node(child, user)
            return
        name = self._canonical_field(node.field)
        op = node.op
        if name in self._TEXT_FIELDS:
            allowed = {"~", "!~", "is", "is not"}
        elif name in self._DATE_FIELDS:
            allowed = {"=", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"}
        else:
            allowed = {"=", "!=", "in", "not in", "is", "is not"}
        if op in ("is", "is not") and name not in self._EMPTYABLE | self._TEXT_FIELDS | self._DATE_FIELDS:
            allowed.discard(op)
        if op not in allowed:
            raise JQLError(f"The operator '{op.upper()}' is not supported by the '{node.field}' field.")
        for value in node.values:
            if value.function is not None:
                if value.function != "currentuser" or name not in ("assignee", "reporter"):
                    raise JQLError(f"Unable to find JQL function '{value.function}()'.")
                continue
            if value.empty:
                continue
            if name in self._DATE_FIELDS and _parse_date(value.text, datetime.now(UTC)) is None:
                raise JQLError(
                    f"Date value '{value.text}' for field '{node.field}' is invalid. Valid formats "
                    "include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', "
                    "or a period format e.g. '-5d', '4w 2d'."
                )
            if (
                name == "key"
                and value.text.upper() not in self._issues
                and not (value.text.isdigit() and any(i.id == int(value.text) for i in self._issues.values()))
            ):
                raise JQLError(f"An issue with key '{value.text}' does not exist for field '{node.field}'.")
            domain = self._domain(name)
            if domain is not None and value.text.lower() not in domain:
                raise JQLError(f"The value '{value.text}' does not exist for the field '{node.field}'.")

    def _domain(self, name: str) -> set[str] | None:
        """Accepted (lower-cased) values for closed-domain fields; None when any value goes."""
        if name == "project":
            return {a.lower() for p in self._projects.values() for a in (p["key"], p["id"], p["name"])}
        if name == "status":
            return {a.lower() for s in self._workflow.values() for a in (s.name, s.id)}
        if name == "statusCategory":
            return {
                str(a).lower() for c in STATUS_CATEGORIES.values() for a in (c["key"], c["name"], c["id"])
            }
        if name == "resolution":
            return {a.lower() for r in RESOLUTIONS.items() for a in r} | {"unresolved"}
        if name == "priority":
            return {a.lower() for p in PRIORITIES.items() for a in p}
        if name == "issuetype":
            return {a.lower() for t in ISSUE_TYPES.items() for a in t}
        if name in ("assignee", "reporter"):
            # Cloud's JQL names people by accountId (GDPR strict mode), Server/DC's by user name.
            return {(self.account_id(u) if self.cloud else u).lower() for u in self._people}
        return None

    def _items(self, name: str, iss: _Issue) -> list[set[str]]:
        """The issue's value(s) for a JQL field, each as its set of lower-cased aliases; [] is EMPTY."""
        if name == "project":
            p = self._projects[iss.project]
            return [{p["key"].lower(), p["id"], p["name"].lower()}]
        if name == "labels":
            return [{label.lower()} for label in iss.labels]
        if name == "status":
            st = self._workflow[iss.status]
            return [{st.name.lower(), st.id}]
        if name == "statusCategory":
            cat = STATUS_CATEGORIES[self._workflow[iss.status].category]
            return [{cat["key"], cat["name"].lower(), str(cat["id"])}]
        if name == "resolution":
            return [] if iss.resolution is None else [{iss.resolution.lower(), RESOLUTIONS[iss.resolution]}]
        if name == "priority":
            return [{iss.priority.lower(), PRIORITIES[iss.priority]}]
        if name == "issuetype":
            return [{iss.issuetype.lower(), ISSUE_TYPES[iss.issuetype]}]
        if name in ("assignee", "reporter"):
            who = iss.assignee if name == "assignee" else iss.reporter
            return [] if who is None else [{(self.account_id(who) if self.cloud else who).lower()}]
        if name == "key":
            return [{iss.key.lower(), str(iss.id)}]
        raise JQLError(f"Field '{name}' does not exist or you do not have permission to view it.")

    def _eval(self, node: _Node, iss: _Issue, user: str, now: datetime) -> bool:
        if isinstance(node, _BoolNode):
            if node.op == "and":
                return all(self._eval(c, iss, user, now) for c in node.children)
            if node.op == "or":
                return any(self._eval(c, iss, user, now) for c in node.children)
            return not self._eval(node.children[0], iss, user, now)
        name = self._canonical_field(node.field)
        if name in self._TEXT_FIELDS:
            return self._eval_text(name, node, iss)
        if name in self._DATE_FIELDS:
            return self._eval_date(name, node, iss, now)
        items = self._items(name, iss)
        wanted = [v for v in node.values if not v.empty]
        wants_empty = any(v.empty for v in node.values)
        me = (self.account_id(user) if self.cloud else user).lower()  # currentUser()
        aliases = {(me if v.function else v.text.lower()) for v in wanted}
        if name == "resolution" and "unresolved" in aliases:
            aliases.discard("unresolved")
            wants_empty = True
        hit = any(item & aliases for item in items)
        if node.op in ("=", "in"):
            return hit or (wants_empty and not items)
        if node.op in ("!=", "not in"):  # like Jira, never matches an EMPTY field
            return bool(items) and not hit
        if node.op == "is":
            return not items
        return bool(items)  # is not

    def _eval_text(self, name: str, node: _Clause, iss: _Issue) -> bool:
        texts = {
            "summary": [iss.summary],
            "description": [adf_text(iss.description)],
            "comment": [adf_text(c.body) for c in iss.comments],
        }
        texts["text"] = texts["summary"] + texts["description"] + texts["comment"]
        haystack = " ".join(texts[name]).lower()
        if node.op in ("is", "is not"):
            return (not haystack.strip()) == (node.op == "is")
        needle = node.values[0].text.lower().strip("*")
        words = re.findall(r"\w+", needle)
        found = all(re.search(rf"\b{re.escape(w)}", haystack) for w in words) if words else False
        return found if node.op == "~" else not found

    def _eval_date(self, name: str, node: _Clause, iss: _Issue, now: datetime) -> bool:
        actual: datetime = iss.created if name == "created" else iss.updated
        if node.op in ("is", "is not"):
            return node.op == "is not"
        bounds = [_parse_date(v.text, now) for v in node.values]
        values = [b for b in bounds if b is not None]
        if node.op in ("=", "in"):
            return any(actual == v for v in values)
        if node.op in ("!=", "not in"):
            return all(actual != v for v in values)
        pivot = values[0]
        return {">": actual > pivot, ">=": actual >= pivot, "<": actual < pivot, "<=": actual <= pivot}[
            node.op
        ]

    def _sort(self, hits: list[_Issue], order: Sequence[tuple[str, bool]]) -> list[_Issue]:
        prio_rank = {name: i for i, name in enumerate(PRIORITIES)}
        keys: dict[str, Callable[[_Issue], Any]] = {
            "created": lambda i: (i.created, i.id),
            "updated": lambda i: (i.updated, i.id),
            "key": lambda i: (i.project, int(i.key.rsplit("-", 1)[1])),
            "priority": lambda i: -prio_rank[i.priority],
            "status": lambda i: i.status,
            "summary": lambda i: i.summary.lower(),
            "issuetype": lambda i: i.issuetype,
            "project": lambda i: i.project,
            "assignee": lambda i: i.assignee or "",
        }
        out = sorted(hits, key=lambda i: i.id)
        for field_name, desc in reversed(order):
            name = self._canonical_field(field_name)
            if name not in keys:
                raise JQLError(f"Field '{field_name}' does not support sorting.")
            out.sort(key=keys[name], reverse=desc)
        return out
