"""Remote links."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tests.support.jira.model import JsonDict
from tests.support.jira.server import _fail, _Response


class RemoteLinksMixin:
    """Part of `JiraFake`: remote links on an issue, updated in place when the globalId matches."""

    def remote_links(self, key: str) -> list[JsonDict]:
        with self._lock:
            return copy.deepcopy(self._issues[key].remote_links)

    def _h_list_remote_links(self, key: str, query: Mapping[str, list[str]], **_: Any) -> _Response:
        global_id = query.get("globalId", [None])[-1]
        with self._lock:
            iss = self._get_issue(key)
            links = [link for link in iss.remote_links if global_id in (None, link.get("globalId"))]
            return self._json(200, copy.deepcopy(links))

    def _h_add_remote_link(self, key: str, headers: Mapping[str, str], body: bytes, **_: Any) -> _Response:
        data = self._body_json(headers, body)
        obj = data.get("object")
        with self._lock:
            iss = self._get_issue(key)
            errors: dict[str, str] = {}
            if not isinstance(obj, dict):
                _fail(400, [], {"object": "'object' is required."})
            if not obj.get("url"):
                errors["url"] = "'url' is required."
            if not obj.get("title"):
                errors["title"] = "'title' is required."
            if errors:
                _fail(400, [], errors)
            global_id = data.get("globalId")
            existing = next(
                (link for link in iss.remote_links if global_id and link.get("globalId") == global_id), None
            )
            if existing is not None:  # Jira updates the link with the same globalId in place
                existing.update({k: copy.deepcopy(v) for k, v in data.items() if k != "id"})
                return self._json(200, {"id": existing["id"], "self": existing["self"]})
            lid = self._next_id()
            link = {
                "id": lid,
                "self": f"{self._base()}/rest/api/2/issue/{iss.key}/remotelink/{lid}",
                **{
                    k: copy.deepcopy(v)
                    for k, v in data.items()
                    if k in ("globalId", "application", "relationship", "object")
                },
            }
            iss.remote_links.append(link)
            iss.updated = datetime.now(UTC)
            return self._json(201, {"id": lid, "self": link["self"]})
