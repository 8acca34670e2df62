"""The instance's catalog as the REST API lists it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.support.jira.model import (
    FIELDS,
    ISSUE_TYPES,
    PRIORITIES,
    STATUS_CATEGORIES,
    JsonDict,
    WorkflowStatus,
    _ts,
)
from tests.support.jira.server import _fail, _Response


class MetadataMixin:
    """Part of `JiraFake`: the instance's catalog as the REST API lists it (server info, fields,
    projects, priorities, issue types, statuses)."""

    def _status_by_name(self, name: str) -> WorkflowStatus | None:
        return next((s for s in self._workflow.values() if s.name.lower() == name.lower()), None)

    def _status_json(self, name: str) -> JsonDict:
        base = self._base()
        st = self._workflow[name]
        cat = STATUS_CATEGORIES[st.category]
        return {
            "self": f"{base}/rest/api/2/status/{st.id}",
            "description": "",
            "iconUrl": f"{base}/images/icons/statuses/generic.png",
            "name": st.name,
            "id": st.id,
            "statusCategory": {"self": f"{base}/rest/api/2/statuscategory/{cat['id']}", **cat},
        }

    def _priority_json(self, name: str) -> JsonDict:
        base = self._base()
        pid = PRIORITIES[name]
        return {
            "self": f"{base}/rest/api/2/priority/{pid}",
            "iconUrl": f"{base}/images/icons/priorities/{name.lower()}.svg",
            "name": name,
            "id": pid,
        }

    def _issuetype_json(self, name: str) -> JsonDict:
        base = self._base()
        tid = ISSUE_TYPES[name]
        return {
            "self": f"{base}/rest/api/2/issuetype/{tid}",
            "id": tid,
            "description": f"A {name.lower()}.",
            "iconUrl": f"{base}/images/icons/issuetypes/{name.lower()}.png",
            "name": name,
            "subtask": False,
        }

    def _project_json(self, key: str) -> JsonDict:
        p = self._projects[key]
        return {
            "self": f"{self._base()}/rest/api/2/project/{p['id']}",
            "id": p["id"],
            "key": key,
            "name": p["name"],
            "projectTypeKey": "software",
            "simplified": False,
        }

    def _h_server_info(self, **_: Any) -> _Response:
        version = [1001, 0, 0] if self.cloud else [9, 12, 2]
        return self._json(
            200,
            {
                "baseUrl": self._site_url or self._base(),
                "version": ".".join(map(str, version)) + ("-SNAPSHOT" if self.cloud else ""),
                "versionNumbers": version,
                "deploymentType": "Cloud" if self.cloud else "Server",
                "buildNumber": 100260 if self.cloud else 9120002,
                "buildDate": "2024-01-01T00:00:00.000+0000",
                "serverTime": _ts(datetime.now(UTC)),
                "scmInfo": "0" * 40,
                "serverTitle": "Jira",
            },
        )

    def _h_fields(self, **_: Any) -> _Response:
        out = []
        for f in FIELDS:
            item: JsonDict = {
                "id": f.id,
                "key": f.id,
                "name": f.name,
                "custom": False,
                "orderable": f.orderable,
                "navigable": f.navigable,
                "searchable": f.searchable,
                "clauseNames": list(f.clause_names),
            }
            if f.schema is not None:
                item["schema"] = f.schema
            out.append(item)
        return self._json(200, out)

    def _h_projects(self, **_: Any) -> _Response:
        with self._lock:
            return self._json(200, [self._project_json(k) for k in self._projects])

    def _h_project(self, key: str, **_: Any) -> _Response:
        with self._lock:
            found = next((k for k, p in self._projects.items() if key in (k, p["id"])), None)
            if found is None:
                _fail(404, [f"No project could be found with key '{key}'."])
            return self._json(200, self._project_json(found))

    def _h_priorities(self, **_: Any) -> _Response:
        return self._json(200, [self._priority_json(p) for p in PRIORITIES])

    def _h_issuetypes(self, **_: Any) -> _Response:
        return self._json(200, [self._issuetype_json(t) for t in ISSUE_TYPES])

    def _h_statuses(self, **_: Any) -> _Response:
        return self._json(200, [self._status_json(s) for s in self._workflow])
