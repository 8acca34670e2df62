"""Comments."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tests.support.jira.adf import ADF_REQUIRED, adf_problem, adf_text, as_adf
from tests.support.jira.model import JsonDict, _Comment, _Issue, _ts
from tests.support.jira.server import _fail, _Response


class CommentsMixin:
    """Part of `JiraFake`: comments on an issue, plain text through v2 and ADF through v3."""

    def comments(self, key: str, *, v3: bool = False) -> list[JsonDict]:
        with self._lock:
            return [self._comment_json(self._issues[key], c, v3=v3) for c in self._issues[key].comments]

    def _comment_json(self, iss: _Issue, c: _Comment, v3: bool = False) -> JsonDict:
        author = self._user_json(c.author)
        return {
            "self": f"{self._base()}/rest/api/{3 if v3 else 2}/issue/{iss.id}/comment/{c.id}",
            "id": str(c.id),
            "author": author,
            "body": as_adf(c.body) if v3 else adf_text(c.body),
            "updateAuthor": self._user_json(c.update_author) if c.update_author else author,
            "created": _ts(c.created),
            "updated": _ts(c.updated),
            "jsdPublic": True,
        }

    def _add_comment(self, iss: _Issue, author: str, body: str | JsonDict) -> _Comment:
        now = datetime.now(UTC)
        comment = _Comment(self._next_id(), author, body, now, now)
        iss.comments.append(comment)
        iss.updated = now
        return comment

    def _h_list_comments(
        self, key: str, query: Mapping[str, list[str]], v3: bool = False, **_: Any
    ) -> _Response:
        start = self._int_param(query, "startAt", 0)
        limit = self._int_param(query, "maxResults", 5000)
        order = query.get("orderBy", ["created"])[-1]
        with self._lock:
            iss = self._get_issue(key)
            comments = list(iss.comments)
            if order.startswith("-"):
                comments.reverse()
            page = comments[start : start + max(limit, 0)]
            return self._json(
                200,
                {
                    "comments": [self._comment_json(iss, c, v3=v3) for c in page],
                    "maxResults": limit,
                    "total": len(comments),
                    "startAt": start,
                },
            )

    def _h_add_comment(
        self, key: str, user: str, headers: Mapping[str, str], body: bytes, v3: bool = False, **_: Any
    ) -> _Response:
        data = self._body_json(headers, body)
        text = data.get("body")
        if v3:
            problem = adf_problem(text)
            if problem or not isinstance(text, dict):
                _fail(400, [], {"comment": problem or ADF_REQUIRED})
            with self._lock:
                iss = self._get_issue(key)
                comment = self._add_comment(iss, user, text)
                payload = self._comment_json(iss, comment, v3=True)
                events = self._comment_events(iss, comment, user)
            self._fire_api_events(events)
            return self._json(201, payload)
        with self._lock:
            iss = self._get_issue(key)
            if not isinstance(text, str) or not text.strip():
                _fail(400, [], {"comment": "Comment body can not be empty!"})
            if len(text) > 32767:
                _fail(
                    400,
                    [],
                    {
                        "comment": "The entered text is too long. It exceeds the allowed limit of "
                        "32,767 characters."
                    },
                )
            comment = self._add_comment(iss, user, text)
            payload = self._comment_json(iss, comment)
            events = self._comment_events(iss, comment, user)
        self._fire_api_events(events)
        return self._json(201, payload)
