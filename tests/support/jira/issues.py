"""The issue store: create, read and edit, validated like Jira validates."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from tests.support.jira.adf import adf_problem, adf_text, as_adf
from tests.support.jira.model import (
    _WRITABLE,
    FIELDS,
    ISSUE_NOT_FOUND,
    ISSUE_TYPES,
    PRIORITIES,
    RESOLUTIONS,
    JsonDict,
    _Issue,
    _ts,
)
from tests.support.jira.server import _fail, _Response


class IssuesMixin:
    """Part of `JiraFake`: the issue store (create, read, edit) with Jira's field validation."""

    @property
    def issues(self) -> dict[str, JsonDict]:
        """Snapshot: key → the issue as `GET /issue/{key}` returns it."""
        with self._lock:
            return {key: self._issue_json(iss, lambda _f: True) for key, iss in self._issues.items()}

    def issue_v3(self, key: str) -> JsonDict:
        """The issue as `GET /rest/api/3/issue/{key}` returns it (description as ADF)."""
        with self._lock:
            return self._issue_json(self._issues[key], lambda _f: True, v3=True)

    def _get_issue(self, key_or_id: str) -> _Issue:
        iss = self._issues.get(key_or_id.upper())
        if iss is None and key_or_id.isdigit():
            iss = next((i for i in self._issues.values() if i.id == int(key_or_id)), None)
        if iss is None:
            _fail(404, [ISSUE_NOT_FOUND])
        return iss

    def _issue_json(self, iss: _Issue, want: Callable[[str], bool], v3: bool = False) -> JsonDict:
        resolution = None
        if iss.resolution is not None:
            rid = RESOLUTIONS[iss.resolution]
            resolution = {
                "self": f"{self._base()}/rest/api/2/resolution/{rid}",
                "id": rid,
                "description": "",
                "name": iss.resolution,
            }
        comments = [self._comment_json(iss, c, v3=v3) for c in iss.comments]
        values: JsonDict = {
            "summary": iss.summary,
            "description": as_adf(iss.description) if v3 else (adf_text(iss.description) or None),
            "labels": list(iss.labels),
            "priority": self._priority_json(iss.priority),
            "status": self._status_json(iss.status),
            "resolution": resolution,
            "resolutiondate": _ts(iss.resolutiondate),
            "assignee": self._user_json(iss.assignee) if iss.assignee else None,
            "reporter": self._user_json(iss.reporter),
            "issuetype": self._issuetype_json(iss.issuetype),
            "project": self._project_json(iss.project),
            "created": _ts(iss.created),
            "updated": _ts(iss.updated),
            "statuscategorychangedate": _ts(iss.status_changed),
            "comment": {
                "comments": comments,
                "maxResults": len(comments),
                "total": len(comments),
                "startAt": 0,
            },
            "attachment": [self._attachment_json(a) for a in iss.attachments],
        }
        return {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": str(iss.id),
            "self": f"{self._base()}/rest/api/2/issue/{iss.id}",
            "key": iss.key,
            "fields": {name: value for name, value in values.items() if want(name)},
        }

    @staticmethod
    def _field_filter(requested: list[str], default: str) -> Callable[[str], bool]:
        """Jira's `fields` parameter: `*all`, `*navigable`, names, `-name` exclusions."""
        names = [n.strip() for value in requested for n in value.split(",") if n.strip()] or [default]
        rendered = {f.id: f for f in FIELDS if f.rendered}
        chosen: set[str] = set()
        excluded: set[str] = set()
        for name in names:
            if name == "*all":
                chosen |= set(rendered)
            elif name == "*navigable":
                chosen |= {f for f, d in rendered.items() if d.navigable}
            elif name.startswith("-"):
                excluded.add(name[1:])
            else:
                chosen.add(name)
        return lambda n: n in chosen and n not in excluded

    def _resolve_ref(self, value: Any, table: Mapping[str, str]) -> str | None:
        """`{"name": ...}` or `{"id": ...}` → the canonical name, None if it does not exist."""
        if not isinstance(value, dict):
            return None
        if "id" in value:
            return next((n for n, i in table.items() if i == str(value["id"])), None)
        if "name" in value:
            return next((n for n in table if n == value["name"]), None)
        return None

    def _validate_fields(
        self, fields: JsonDict, *, creating: bool, v3: bool = False
    ) -> tuple[JsonDict, dict[str, str]]:
        """Check the `fields` object like Jira's validators do; return (clean values, errors)."""
        clean: JsonDict = {}
        errors: dict[str, str] = {}
        for name, value in fields.items():
            if name not in _WRITABLE or (not creating and name == "project"):
                errors[name] = (
                    f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                )
                continue
            if name == "project":
                ref = value if isinstance(value, dict) else {}
                key = next(
                    (
                        k
                        for k, p in self._projects.items()
                        if ref.get("key") == k or str(ref.get("id")) == p["id"]
                    ),
                    None,
                )
                if key is None:
                    errors["project"] = "valid project is required"
                else:
                    clean["project"] = key
            elif name == "issuetype":
                itype = self._resolve_ref(value, ISSUE_TYPES)
                if itype is None:
                    errors["issuetype"] = "valid issue type is required"
                else:
                    clean["issuetype"] = itype
            elif name == "summary":
                if not isinstance(value, str) or not value.strip():
                    errors["summary"] = "You must specify a summary of the issue."
                elif "\n" in value or "\r" in value:
                    errors["summary"] = "The summary is invalid because it contains newline characters."
                elif len(value) > 255:
                    errors["summary"] = "Summary must be less than 255 characters."
                else:
                    clean["summary"] = value
            elif name == "description" and v3:
                problem = None if value is None else adf_problem(value)
                if problem:
                    errors["description"] = problem
                else:
                    clean["description"] = value
            elif name == "description":
                if value is not None and not isinstance(value, str):
                    errors["description"] = "Operation value must be a string"
                else:
                    clean["description"] = value
            elif name == "labels":
                labels, err = self._check_labels(value)
                if err:
                    errors["labels"] = err
                else:
                    clean["labels"] = labels
            elif name == "priority":
                if not isinstance(value, dict) or not ({"id", "name"} & set(value)):
                    errors["priority"] = "Could not find valid 'id' or 'name' in priority object."
                else:
                    prio = self._resolve_ref(value, PRIORITIES)
                    if prio is None:
                        errors["priority"] = (
                            f"Priority name '{value['name']}' is not valid"
                            if "name" in value
                            else f"Invalid priority id '{value['id']}'"
                        )
                    else:
                        clean["priority"] = prio
            elif name in ("assignee", "reporter"):
                if value is None:
                    if name == "reporter":
                        errors[name] = "Reporter is required."
                    else:
                        clean[name] = None
                    continue
                ident = value.get("accountId") or value.get("name") if isinstance(value, dict) else None
                user = self._find_user(str(ident)) if ident else None
                if user is None:
                    errors[name] = f"User '{ident}' does not exist."
                else:
                    clean[name] = user
        return clean, errors

    @staticmethod
    def _check_labels(value: Any) -> tuple[list[str], str | None]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return [], "Operation value must be a string"
        out: list[str] = []
        for label in value:
            err = IssuesMixin._check_label(label)
            if err:
                return [], err
            if label not in out:
                out.append(label)
        return out, None

    @staticmethod
    def _check_label(label: Any) -> str | None:
        if not isinstance(label, str) or not label:
            return "Operation value must be a string"
        if any(ch.isspace() for ch in label):
            return f"The label '{label}' contains spaces which is invalid."
        if len(label) > 255:
            return f"The label '{label}' exceeds the maximum length for a single label of 255 characters."
        return None

    def _apply_update_ops(
        self, update: JsonDict, fields: JsonDict, labels: list[str], clean: JsonDict, errors: dict[str, str]
    ) -> list[str]:
        """Jira's `update` verbs (add/remove/set) on top of `fields`; returns comment bodies to add.

        `labels` is changed in place, `clean` and `errors` are filled like `_validate_fields` does.
        """
        new_comments: list[str] = []
        for name, ops in update.items():
            if name in fields:
                errors[name] = f"Field '{name}' cannot be set in both 'fields' and 'update'."
                continue
            if not isinstance(ops, list):
                errors[name] = "Operations must be a list"
                continue
            for op in ops:
                if not isinstance(op, dict) or len(op) != 1:
                    errors[name] = "Each operation must have exactly one verb"
                    break
                verb, value = next(iter(op.items()))
                if name == "labels":
                    err: str | None = None
                    if verb == "set":
                        new, err = self._check_labels(value)
                        labels[:] = new
                    elif verb in ("add", "remove"):
                        err = self._check_label(value)
                        if err is None and verb == "add" and value not in labels:
                            labels.append(value)
                        if err is None and verb == "remove" and value in labels:
                            labels.remove(value)
                    else:
                        err = f"Field 'labels' does not support operation '{verb}'"
                    if err:
                        errors["labels"] = err
                elif name == "comment" and verb == "add":
                    text = value.get("body") if isinstance(value, dict) else None
                    if not isinstance(text, str) or not text.strip():
                        errors["comment"] = "Comment body can not be empty!"
                    else:
                        new_comments.append(text)
                elif verb == "set" and name in _WRITABLE - {"labels", "project", "issuetype"}:
                    more, errs = self._validate_fields({name: value}, creating=False)
                    clean.update(more)
                    errors.update(errs)
                else:
                    errors[name] = (
                        f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
                    )
        return new_comments

    def _h_create(
        self, user: str, headers: Mapping[str, str], body: bytes, v3: bool = False, **_: Any
    ) -> _Response:
        data = self._body_json(headers, body)
        fields = data.get("fields")
        if not isinstance(fields, dict):
            _fail(400, ["Issue must have fields"] if fields is None else ["fields must be an object"])
        with self._lock:
            clean, errors = self._validate_fields(fields, creating=True, v3=v3)
            if "project" not in fields:
                errors["project"] = "project is required"
            if "issuetype" not in fields:
                errors["issuetype"] = "issue type is required"
            if "summary" not in fields:
                errors["summary"] = "You must specify a summary of the issue."
            update = data.get("update") or {}
            if not isinstance(update, dict):
                _fail(400, ["update must be an object"])
            labels = list(clean.get("labels", []))
            new_comments = self._apply_update_ops(update, fields, labels, clean, errors)
            if errors:
                _fail(400, [], errors)
            project = clean["project"]
            number = self._counters.get(project, 0) + 1
            self._counters[project] = number
            now = datetime.now(UTC)
            first = next(iter(self._workflow.values()))
            iss = _Issue(
                id=self._next_id(),
                key=f"{project}-{number}",
                project=project,
                issuetype=clean["issuetype"],
                summary=clean["summary"],
                description=clean.get("description"),
                labels=labels,
                priority=clean.get("priority", "Medium"),
                status=first.name,
                reporter=clean.get("reporter", user),
                created=now,
                assignee=clean.get("assignee"),
                updated=now,
                status_changed=now,
            )
            self._issues[iss.key] = iss
            for text in new_comments:
                self._add_comment(iss, user, text)
            created_event: JsonDict = {
                "timestamp": int(time.time() * 1000),
                "webhookEvent": "jira:issue_created",
                "issue_event_type_name": "issue_created",
                "user": self._webhook_user(user),
                "issue": self._webhook_issue(iss),
            }
            held = self._holds.pop(0) if self._holds else None
            if held is not None:
                self._active_holds.append(held)
                held.key = iss.key
            version = 3 if v3 else 2
            payload = {
                "id": str(iss.id),
                "key": iss.key,
                "self": f"{self._base()}/rest/api/{version}/issue/{iss.id}",
            }
        self._fire_api_events([created_event])
        if held is not None:
            held.created.set()
            held.released.wait(self._hold_timeout)
        return self._json(201, payload)

    def _h_get_issue(self, key: str, query: Mapping[str, list[str]], v3: bool = False, **_: Any) -> _Response:
        with self._lock:
            iss = self._get_issue(key)
            want = self._field_filter(query.get("fields", []), "*all")
            return self._json(200, self._issue_json(iss, want, v3=v3))

    def _h_edit_issue(
        self, key: str, user: str, headers: Mapping[str, str], body: bytes, v3: bool = False, **_: Any
    ) -> _Response:
        data = self._body_json(headers, body)
        fields = data.get("fields") or {}
        update = data.get("update") or {}
        if not isinstance(fields, dict) or not isinstance(update, dict):
            _fail(400, ["fields and update must be objects"])
        with self._lock:
            iss = self._get_issue(key)
            clean, errors = self._validate_fields(fields, creating=False, v3=v3)
            labels = list(clean.get("labels", iss.labels))
            new_comments = self._apply_update_ops(update, fields, labels, clean, errors)
            if errors:
                _fail(400, [], errors)
            before = self._editable_strings(iss)
            for name, value in clean.items():
                if name != "labels":
                    setattr(iss, name, value)
            iss.labels = labels
            iss.updated = datetime.now(UTC)
            events = self._edit_events(iss, user, before)
            comments = [self._add_comment(iss, user, text) for text in new_comments]
            events += [e for c in comments for e in self._comment_events(iss, c, user)]
        self._fire_api_events(events)
        return _Response(204)

    @staticmethod
    def _editable_strings(iss: _Issue) -> dict[str, str | None]:
        """Field values as a changelog shows them (`fromString` / `toString`)."""
        return {
            "summary": iss.summary,
            "description": adf_text(iss.description) or None,
            "labels": " ".join(iss.labels) or None,
            "priority": iss.priority,
            "assignee": iss.assignee,
            "issuetype": iss.issuetype,
        }

    def _edit_events(self, iss: _Issue, user: str, before: dict[str, str | None]) -> list[JsonDict]:
        """The `jira:issue_updated` event for a REST edit; none when nothing changed (as in Jira)."""
        after = self._editable_strings(iss)
        items = [
            {
                "field": name,
                "fieldtype": "jira",
                "fieldId": name,
                "from": None,
                "fromString": before[name],
                "to": None,
                "toString": after[name],
            }
            for name in after
            if before[name] != after[name]
        ]
        if not items:
            return []
        return [
            {
                "timestamp": int(time.time() * 1000),
                "webhookEvent": "jira:issue_updated",
                "issue_event_type_name": "issue_updated",
                "user": self._webhook_user(user),
                "issue": self._webhook_issue(iss),
                "changelog": {"id": str(self._next_id()), "items": items},
            }
        ]
