"""Workflow transitions."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tests.support.jira.model import RESOLUTIONS, JsonDict, WorkflowStatus, _Issue
from tests.support.jira.server import _fail, _Response


class TransitionsMixin:
    """Part of `JiraFake`: the workflow's global transitions: listing them and moving an issue."""

    def _do_transition(self, iss: _Issue, target: WorkflowStatus, user: str) -> JsonDict:
        """Move the issue; return the `jira:issue_updated` event Jira would send for it."""
        now = datetime.now(UTC)
        old = self._workflow[iss.status]
        items: list[JsonDict] = []
        if target.resolution != iss.resolution:
            items.append(
                {
                    "field": "resolution",
                    "fieldtype": "jira",
                    "fieldId": "resolution",
                    "from": RESOLUTIONS.get(iss.resolution or ""),
                    "fromString": iss.resolution,
                    "to": RESOLUTIONS.get(target.resolution or ""),
                    "toString": target.resolution,
                }
            )
            iss.resolution = target.resolution
            iss.resolutiondate = now if target.resolution else None
        items.append(
            {
                "field": "status",
                "fieldtype": "jira",
                "fieldId": "status",
                "from": old.id,
                "fromString": old.name,
                "to": target.id,
                "toString": target.name,
            }
        )
        if old.category != target.category:
            iss.status_changed = now
        iss.status = target.name
        iss.updated = now
        return {
            "timestamp": int(time.time() * 1000),
            "webhookEvent": "jira:issue_updated",
            "issue_event_type_name": "issue_generic",
            "user": self._webhook_user(user),
            "issue": self._webhook_issue(iss),
            "changelog": {"id": str(self._next_id()), "items": items},
        }

    def _transition_json(self, st: WorkflowStatus) -> JsonDict:
        return {
            "id": st.transition_id,
            "name": st.name,
            "to": self._status_json(st.name),
            "hasScreen": False,
            "isGlobal": True,
            "isInitial": False,
            "isAvailable": True,
            "isConditional": False,
        }

    def _available(self, iss: _Issue) -> list[WorkflowStatus]:
        return [s for s in self._workflow.values() if s.name != iss.status]

    def _h_list_transitions(self, key: str, query: Mapping[str, list[str]], **_: Any) -> _Response:
        only = query.get("transitionId", [None])[-1]
        with self._lock:
            iss = self._get_issue(key)
            items = [
                self._transition_json(s) for s in self._available(iss) if only in (None, s.transition_id)
            ]
            return self._json(200, {"expand": "transitions", "transitions": items})

    def _h_transition(
        self, key: str, user: str, headers: Mapping[str, str], body: bytes, **_: Any
    ) -> _Response:
        data = self._body_json(headers, body)
        transition = data.get("transition")
        tid = transition.get("id") if isinstance(transition, dict) else None
        with self._lock:
            iss = self._get_issue(key)
            if tid is None:
                _fail(400, ["Missing 'transition' identifier"])
            target = next((s for s in self._available(iss) if s.transition_id == str(tid)), None)
            if target is None:
                _fail(400, [f"Transition id '{tid}' is not valid for this issue."])
            extra = data.get("fields") or {}
            if extra:
                _fail(
                    400,
                    [],
                    {
                        name: f"Field '{name}' cannot be set. It is not on the appropriate screen, "
                        "or unknown."
                        for name in extra
                    },
                )
            event = self._do_transition(iss, target, user)
            events = [event]
            for op in (data.get("update") or {}).get("comment", []):
                text = op.get("add", {}).get("body", "") if isinstance(op, dict) else ""
                if text:
                    self._add_comment(iss, user, text)
        self._fire_api_events(events)
        return _Response(204)
